"""h5par on chunked, compressed data and on plain data, against the code people write (issue 18).

    .venv/bin/python benchmarks/chunked.py [--rounds 3] [--planes 128] [--plain 1GiB]
        [--workloads compressed,rechunk,plain] [--variant old=/work/wt-old]

Three workloads, each clipping negatives (``np.clip(x, 0, None)``) into a new file:

- ``compressed``: a float32 field ``(planes, 1024, 1024)`` (512 MiB at 128 planes), chunks
  ``(4, 256, 256)``, gzip 4 + shuffle; the output keeps chunks and filters;
- ``rechunk``: the same field stored in chunks ``(1, 1024, 1024)``, gzip 4, written in chunks
  ``(8, 128, 128)``, gzip 4;
- ``plain``: a contiguous float64 ``(rows, 1024)`` of ``--plain`` bytes, written contiguous.

Methods:

- ``serial``: a serial h5py loop over whole chunk slabs (the planes of one output chunk row,
  a multiple of the input's; plain data: 32 MiB blocks), ``read_direct`` into one buffer,
  ``np.clip(out=)``, ``write_direct``;
- ``mpio-2``: the hand-written h5py + mpio script on 2 ranks: the same slabs dealt round-robin
  to the ranks, ``with dset.collective:`` around each write (filtered data needs it), one
  collective call per step on every rank;
- ``h5par-1`` (``python -m h5par run``, no mpirun), ``h5par-2``
  (``mpirun -n 2 python -m mpi4py -m h5par run``), ``h5par-2-subfiled``
  (``--set output.layout=subfiled``), and ``NAME-1`` / ``NAME-2`` for each ``--variant``.

Each run is one command timed from launch to exit; GNU time records each process's peak
RSS. An untimed warm-up round verifies every output against numpy (bitwise, chunks and
filters as planned); then ``--rounds`` rounds run every method once, round-robin, the order
rotating each round. Ratios are serial / method (higher is better), and ``h5par-2`` against
``mpio-2`` and ``h5par-1``. Exit status 1 when an output is wrong or a run fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from _runner import environment, interleaved, launch, rss_line, save_results

from h5par.core.sizes import parse_size

WORKLOADS = ("compressed", "rechunk", "plain")
WIDTH = 1024
BUDGET = 256 << 20  # h5par's default memory per rank
# (workload, method, bar) -> target of bar / method; bar "serial" unless named
TARGETS = {
    ("compressed", "h5par-2", "serial"): 1.8,
    ("compressed", "h5par-2", "mpio-2"): 1.0,
    ("compressed", "h5par-1", "serial"): 0.95,
    ("rechunk", "h5par-2", "serial"): 1.8,
    ("rechunk", "h5par-2", "mpio-2"): 1.0,
    ("rechunk", "h5par-1", "serial"): 0.95,
    ("plain", "h5par-2", "serial"): 1.0,
    ("plain", "h5par-2", "h5par-1"): 1.0,
}

SERIAL = """
import sys, time, json, h5py, numpy as np
src, dst, step, create = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
create = {k: tuple(v) if isinstance(v, list) else v for k, v in create.items()}
with h5py.File(src, "r") as fin, h5py.File(dst, "w") as fout:
    din = fin["x"]
    dout = fout.create_dataset("x", din.shape, din.dtype, fill_time="never", **create)
    buf = np.empty((step, *din.shape[1:]), din.dtype)
    for a in range(0, din.shape[0], step):
        n = min(step, din.shape[0] - a)
        din.read_direct(buf, np.s_[a:a + n], np.s_[0:n])
        np.clip(buf[:n], 0, None, out=buf[:n])
        dout.write_direct(buf, np.s_[0:n], np.s_[a:a + n])
"""

MPIO = """
import sys, json, h5py, numpy as np
from h5py import h5fd, h5p, h5s
from mpi4py import MPI
comm = MPI.COMM_WORLD
dxpl = h5p.create(h5p.DATASET_XFER)
dxpl.set_dxpl_mpio(h5fd.MPIO_COLLECTIVE)
src, dst, step, create = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
create = {k: tuple(v) if isinstance(v, list) else v for k, v in create.items()}
with h5py.File(src, "r", driver="mpio", comm=comm) as fin, \\
        h5py.File(dst, "w", driver="mpio", comm=comm) as fout:
    din = fin["x"]
    dout = fout.create_dataset("x", din.shape, din.dtype, fill_time="never", **create)
    starts = list(range(0, din.shape[0], step))
    mine = starts[comm.rank::comm.size]
    buf = np.empty((step, *din.shape[1:]), din.dtype)
    for i in range(-(-len(starts) // comm.size)):  # one collective call per step, every rank
        if i < len(mine):
            a = mine[i]
            n = min(step, din.shape[0] - a)
            din.read_direct(buf, np.s_[a:a + n], np.s_[0:n])
            np.clip(buf[:n], 0, None, out=buf[:n])
            with dout.collective:
                dout.write_direct(buf, np.s_[0:n], np.s_[a:a + n])
        else:  # nothing left here: an empty collective write (h5py skips empty selections)
            fspace = dout.id.get_space()
            fspace.select_none()
            mspace = h5s.create_simple((1,))
            mspace.select_none()
            dout.id.write(mspace, fspace, buf[:1], dxpl=dxpl)
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated")
    p.add_argument("--planes", type=int, default=128, help="axis-0 extent of the 3-d field")
    p.add_argument("--plain", default="1GiB", help="bytes of the plain float64 input")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--mpirun", default="mpirun")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=PYTHONPATH",
                   help="also run h5par from another checkout (repeatable)")  # fmt: skip
    p.add_argument("--env-variant", action="append", default=[], metavar="NAME:VAR=VALUE,...",
                   help="also run h5par on 2 ranks with these environment variables, e.g. "
                   "cb1:OMPI_MCA_io=romio321,ROMIO_HINTS=/tmp/hints (repeatable)")  # fmt: skip
    p.add_argument("--workdir", type=Path, default=None, help="default: under --results")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    p.add_argument("--results", type=Path, default=Path(f"/tmp/h5par-chunked-results/{stamp}"))
    args = p.parse_args(argv)
    for name in args.workloads.split(","):
        if name not in WORKLOADS:
            p.error(f"--workloads: unknown {name!r} (valid: {', '.join(WORKLOADS)})")
    args.plain = parse_size(args.plain)
    return args


def layouts(workload: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``create_dataset`` keywords of the input and of the output."""
    gzip: dict[str, Any] = {"compression": "gzip", "compression_opts": 4}
    if workload == "compressed":
        both = {"chunks": (4, 256, 256), "shuffle": True, **gzip}
        return both, both
    if workload == "rechunk":
        return {"chunks": (1, WIDTH, WIDTH), **gzip}, {"chunks": (8, 128, 128), **gzip}
    return {}, {}


def make_input(path: Path, workload: str, args: argparse.Namespace) -> tuple[int, ...]:
    """Write a workload's input (standard normal values, half negative); its shape."""
    rng = np.random.default_rng(0)
    create, _ = layouts(workload)
    if workload == "plain":
        shape: tuple[int, ...] = (max(1, args.plain // (8 * WIDTH)), WIDTH)
        dtype, step = np.dtype("f8"), 4096
    else:
        shape, dtype, step = (args.planes, WIDTH, WIDTH), np.dtype("f4"), 8
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("x", shape, dtype, **create)
        for a in range(0, shape[0], step):
            n = min(step, shape[0] - a)
            dset[a : a + n] = rng.standard_normal((n, *shape[1:]), dtype=dtype)
    return shape


def slab(workload: str) -> int:
    """Planes (rows) per step of the serial and mpio loops: whole chunks in and out."""
    create_in, create_out = layouts(workload)
    if workload == "plain":
        return (32 << 20) // (8 * WIDTH)
    return math.lcm(create_in["chunks"][0], create_out["chunks"][0])


def write_job(path: Path, workload: str) -> None:
    """The h5par job of a workload (the output's chunks and filters as the loops write them)."""
    _, create = layouts(workload)
    lines = ['version = 1', '[input]', 'path = "in.h5"', '[output]', 'path = "out/out.h5"',
             'overwrite = true']  # fmt: skip
    if workload == "rechunk":
        lines += [f"chunks = {list(create['chunks'])}", 'compression = "gzip"',
                  "compression_level = 4"]  # fmt: skip
    lines += ["[[kernels]]", 'name = "clip"', "min = 0.0"]
    path.write_text("\n".join(lines) + "\n")


def prepare(args: argparse.Namespace, workload: str, root: Path) -> dict[str, Any]:
    """Write a workload's input and job under ``root``; what its runs need."""
    root.mkdir(parents=True, exist_ok=True)
    shape = make_input(root / "in.h5", workload, args)
    write_job(root / "job.toml", workload)
    _, create = layouts(workload)
    create = {k: list(v) if isinstance(v, tuple) else v for k, v in create.items()}
    loop = [str(root / "in.h5"), str(root / "out" / "out.h5"), str(slab(workload))]
    return {"root": root, "job": root / "job.toml", "shape": shape, "loop": [*loop, json.dumps(create)],
            "bytes": (root / "in.h5").stat().st_size}  # fmt: skip


Spec = tuple[str, int, str | None, dict[str, str]]  # kind, ranks, PYTHONPATH, environment


def methods(args: argparse.Namespace) -> dict[str, Spec]:
    """Method label -> (kind, ranks, PYTHONPATH, extra environment)."""
    found: dict[str, Spec] = {
        "serial": ("serial", 1, None, {}),
        "mpio-2": ("mpio", 2, None, {}),
        "h5par-1": ("h5par", 1, None, {}),
        "h5par-2": ("h5par", 2, None, {}),
        "h5par-2-subfiled": ("subfiled", 2, None, {}),
    }
    for spec in args.variant:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--variant wants NAME=PYTHONPATH, got {spec!r}")
        found.update({f"{name}-1": ("h5par", 1, path, {}), f"{name}-2": ("h5par", 2, path, {})})
    for spec in args.env_variant:
        name, sep, assignments = spec.partition(":")
        pairs = [item.partition("=") for item in assignments.split(",")]
        if not sep or not name or not all(var and eq for var, eq, _ in pairs):
            raise SystemExit(f"--env-variant wants NAME:VAR=VALUE,..., got {spec!r}")
        found[f"{name}-2"] = ("h5par", 2, None, {var: value for var, _, value in pairs})
    return found


def command(args: argparse.Namespace, work: dict[str, Any], kind: str, ranks: int, rss: Path):
    """The command line of one run: every process under GNU time (peak RSS) when present."""
    if kind in ("serial", "mpio"):
        run = [args.python, "-c", SERIAL if kind == "serial" else MPIO, *work["loop"]]
    else:
        launcher = ["-m", "mpi4py"] if ranks > 1 else []  # one process: as a user runs it
        run = [args.python, *launcher, "-m", "h5par", "run", str(work["job"]), "--quiet"]
        run += ["--set", "output.layout=subfiled"] if kind == "subfiled" else []
    timer = shutil.which("time", path="/usr/bin:/bin")
    if timer is not None:
        run = [timer, "-a", "-o", str(rss), "-f", "%M", *run]
    return [args.mpirun, "-n", str(ranks), *run] if ranks > 1 else run


def verify(workload: str, root: Path) -> str | None:
    """None when the output is ``np.clip`` of the input bitwise, with the planned layout."""
    out = root / "out" / "out.h5"
    if not out.exists():
        return f"missing {out}"
    _, create = layouts(workload)
    with h5py.File(root / "in.h5", "r") as fin, h5py.File(out, "r") as fout:
        din, dout = fin["x"], fout["x"]
        parts = sorted((root / "out").glob("out.h5.parts/part-*.h5"))
        if not parts and dout.chunks != create.get("chunks"):
            return f"chunks {dout.chunks}, expected {create.get('chunks')}"
        if dout.shape != din.shape or dout.dtype != din.dtype:
            return f"{dout.dtype}{dout.shape}, expected {din.dtype}{din.shape}"
        step = max(1, (64 << 20) // (din.dtype.itemsize * math.prod(din.shape[1:])))
        for a in range(0, din.shape[0], step):
            want = np.clip(din[a : a + step], 0, None)
            if not np.array_equal(dout[a : a + step], want):
                return f"rows {a}:{a + step} differ from np.clip"
    return None


def clean(root: Path) -> None:
    """Remove a workload's outputs (and any state h5par keeps next to them)."""
    shutil.rmtree(root / "out", ignore_errors=True)
    (root / "out").mkdir()


def run_one(args: argparse.Namespace, work: dict[str, Any], spec: Spec) -> dict[str, Any]:
    """One timed run of one method on one workload; the record."""
    kind, ranks, pythonpath, extra = spec
    clean(work["root"])
    os.sync()  # the previous run's dirty pages, outside the timing
    rss = work["root"] / "rss.txt"
    rss.unlink(missing_ok=True)
    cmd = command(args, work, kind, ranks, rss)
    record = launch(cmd, {**environment(pythonpath), **extra}, work["root"], args.timeout)
    if rss.exists():
        record["rss_mib"] = [int(x) / 1024 for x in rss.read_text().split() if x.isdigit()]
    record["cmd"] = " ".join(c if "\n" not in c else "<script>" for c in cmd)
    return record


def rounds(args: argparse.Namespace, works: dict[str, dict], specs: dict) -> tuple[list, list]:
    """The warm-up round (verified) then the timed rounds; (runs, failures)."""
    runs, failures = interleaved(
        args.rounds,
        [(w, m) for w in works for m in specs],
        lambda w, m: run_one(args, works[w], specs[m]),
        lambda w: verify(w, works[w]["root"]),
        rss_line,
    )
    for work in works.values():
        clean(work["root"])
    return runs, failures


def summarize(runs: list[dict], works: dict[str, dict], specs: dict) -> list[dict[str, Any]]:
    """Per workload and method: median, min, max wall, peak RSS and the ratios to the bars."""
    rows = []
    for workload in works:
        walls = {m: [r["wall"] for r in runs if r["returncode"] == 0
                     and (r["workload"], r["method"]) == (workload, m)] for m in specs}  # fmt: skip
        medians = {m: statistics.median(v) for m, v in walls.items() if v}
        for method, values in walls.items():
            if not values:  # every run failed: no timing to report
                continue
            rss = [x for r in runs if (r["workload"], r["method"]) == (workload, method)
                   for x in r.get("rss_mib", [])]  # fmt: skip
            ratios = {bar: medians[bar] / medians[method] for bar in ("serial", "mpio-2", "h5par-1")
                      if bar in medians and bar != method}  # fmt: skip
            rows.append({
                "workload": workload, "method": method, "median": medians[method],
                "min": min(values), "max": max(values), "rss_mib": max(rss, default=None),
                "ratios": ratios,
                "targets": {bar: t for (w, m, bar), t in TARGETS.items()
                            if (w, m) == (workload, method)},
            })  # fmt: skip
    return rows


def table(rows: list[dict[str, Any]], header: str) -> str:
    """The result table as text: one line per workload and method, ratios against targets."""
    lines = [header, "", f"{'workload':11}{'method':18}{'median s':>9} {'min-max s':>13}"
             f" {'peak RSS':>9}  ratios (bar/method, target)"]  # fmt: skip
    for r in rows:
        rss = "" if r["rss_mib"] is None else f"{r['rss_mib']:.0f} MiB"
        marks = []
        for bar, ratio in r["ratios"].items():
            target = r["targets"].get(bar)
            verdict = (
                "" if target is None else f" >= {target} {'ok' if ratio >= target else 'MISS'}"
            )
            marks.append(f"{bar} {ratio:.2f}{verdict}")
        lines.append(
            f"{r['workload']:11}{r['method']:18}{r['median']:9.2f} "
            f"{r['min']:6.2f}-{r['max']:<6.2f} {rss:>9}  {'; '.join(marks)}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Prepare the inputs, run the rounds, print and save the table; the exit status."""
    args = parse_args(argv)
    specs = methods(args)
    workdir = args.workdir or args.results / "work"
    works = {w: prepare(args, w, workdir / w) for w in args.workloads.split(",")}
    runs, failures = rounds(args, works, specs)
    sizes = ", ".join(f"{w} {tuple(work['shape'])} {work['bytes'] / 2**20:.0f} MiB on disk"
                      for w, work in works.items())  # fmt: skip
    header = (f"h5par chunked benchmark: {args.rounds} rounds after a verified warm-up, wall "
              f"seconds of the whole command, peak RSS per process; {sizes}; "
              f"h5par memory {BUDGET >> 20} MiB; variants: {args.variant or 'none'}")  # fmt: skip
    rows = summarize(runs, works, specs) if runs else []
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs, "rows": rows}
    return save_results(args.results, "chunked", table(rows, header), failures, summary)


if __name__ == "__main__":
    sys.exit(main())
