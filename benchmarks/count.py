"""h5par's cost in count: thousands of datasets, thousands of files (issue 23).

    .venv/bin/python benchmarks/count.py [--rounds 3] [--scale K] [--variant old=/work/wt-old]

Two workloads, each clipping negatives (``np.clip(x, 0, None)``) into new files:

- ``datasets``: one input of G groups x D datasets of N float64 (``/{g}/v{d}``);
- ``files``: F inputs of one ``side x side`` float64 dataset ``/x``, one output per input.

Methods: ``loop`` (a plain serial h5py loop, the bar), ``h5par-1`` (``python -m h5par run``
without mpirun), ``h5par-2`` (``mpirun -n 2 python -m mpi4py -m h5par run``), and the same
two for each ``--variant NAME=PYTHONPATH`` (``NAME-1``, ``NAME-2``). Every run is one
command timed from launch to exit, under ``--timeout``; an untimed warm-up round verifies
each method's output against numpy, then ``--rounds`` timed rounds run every method once,
round-robin, the order rotating by one each round. The ratio is loop / method (higher is
better). Exit status 1 when an output is wrong or a run fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from _runner import environment, interleaved, launch, save_results

TARGETS = {("datasets", 1): 0.7, ("datasets", 2): 1.0, ("files", 1): 0.7, ("files", 2): 1.5}
LOOP_DATASETS = """
import sys, pathlib, h5py, numpy as np
pathlib.Path(sys.argv[2]).parent.mkdir(exist_ok=True)
with h5py.File(sys.argv[1], "r") as fin, h5py.File(sys.argv[2], "w") as fout:
    names = []
    fin.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    for name in names:
        fout.create_dataset(name, data=np.clip(fin[name][()], 0, None))
"""
LOOP_FILES = """
import sys, pathlib, h5py, numpy as np
out = pathlib.Path(sys.argv[2]); out.mkdir(exist_ok=True)
for src in sorted(pathlib.Path(sys.argv[1]).glob("*.h5")):
    with h5py.File(src, "r") as fin, h5py.File(out / src.name, "w") as fout:
        fout.create_dataset("x", data=np.clip(fin["x"][()], 0, None))
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workloads", default="datasets,files", help="comma-separated")
    p.add_argument("--groups", type=int, default=40)
    p.add_argument("--per-group", type=int, default=50)
    p.add_argument("--length", type=int, default=1000, help="float64 values per dataset")
    p.add_argument("--files", type=int, default=500)
    p.add_argument("--side", type=int, default=100, help="each file holds side x side")
    p.add_argument("--scale", type=int, default=1, help="multiply groups and files by K")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--mpirun", default="mpirun")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=PYTHONPATH",
        help="also run h5par from another checkout (repeatable)",
    )
    p.add_argument("--workdir", type=Path, default=None, help="default: under --results")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    p.add_argument("--results", type=Path, default=Path(f"/tmp/h5par-count-results/{stamp}"))
    return p.parse_args(argv)


def make_datasets(path: Path, groups: int, per_group: int, length: int) -> None:
    """One file of ``groups x per_group`` datasets ``/{g}/v{d}`` of random normal float64."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for g in range(groups):
            grp = f.create_group(str(g))
            for d in range(per_group):
                grp.create_dataset(f"v{d}", data=rng.normal(size=length))


def make_files(folder: Path, count: int, side: int) -> None:
    """``count`` files ``f{i}.h5`` of one ``side x side`` random normal float64 ``/x``."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        with h5py.File(folder / f"f{i:06d}.h5", "w") as f:
            f.create_dataset("x", data=rng.normal(size=(side, side)))


def write_job(path: Path, source: str, target: str, shared: bool = False) -> None:
    """An h5par clip job reading ``source`` and writing ``target`` (relative to ``path``).

    ``shared``: every rank works on the file (``file_parallel_below = 0``), whatever its size.
    """
    path.write_text(
        f'version = 1\n[input]\npath = "{source}"\n'
        f'[output]\npath = "{target}"\noverwrite = true\n'
        '[[kernels]]\nname = "clip"\nmin = 0.0\n'
        + ("[run]\nfile_parallel_below = 0\n" if shared else "")
    )


def prepare(args: argparse.Namespace, workload: str, root: Path) -> dict[str, Any]:
    """Write a workload's input and job under ``root``; what its runs need."""
    root.mkdir(parents=True, exist_ok=True)
    if workload == "datasets":
        groups = args.groups * args.scale
        make_datasets(root / "many.h5", groups, args.per_group, args.length)
        write_job(root / "job.toml", "many.h5", "out/many.h5", shared=True)
        loop = [LOOP_DATASETS, str(root / "many.h5"), str(root / "out" / "many.h5")]
        count = groups * args.per_group
    else:
        count = args.files * args.scale
        make_files(root / "in", count, args.side)
        write_job(root / "job.toml", "in/*.h5", "out/{stem}.h5")
        loop = [LOOP_FILES, str(root / "in"), str(root / "out")]
    return {"root": root, "job": root / "job.toml", "loop": loop, "count": count}


def methods(args: argparse.Namespace) -> dict[str, tuple[int, str | None]]:
    """Method label -> (ranks, PYTHONPATH); ranks 0 is the serial h5py loop."""
    found: dict[str, tuple[int, str | None]] = {"loop": (0, None)}
    found.update({"h5par-1": (1, None), "h5par-2": (2, None)})
    for spec in args.variant:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--variant wants NAME=PYTHONPATH, got {spec!r}")
        found.update({f"{name}-1": (1, path), f"{name}-2": (2, path)})
    return found


def command(args: argparse.Namespace, work: dict[str, Any], ranks: int) -> list[str]:
    """The command line of one run."""
    if ranks == 0:
        return [args.python, "-c", *work["loop"]]
    h5par = ["-m", "h5par", "run", str(work["job"]), "--quiet"]
    if ranks == 1:
        return [args.python, *h5par]
    return [args.mpirun, "-n", str(ranks), args.python, "-m", "mpi4py", *h5par]


def clean(root: Path) -> None:
    """Remove a workload's outputs (and any state h5par keeps next to them)."""
    shutil.rmtree(root / "out", ignore_errors=True)


def same(src: h5py.Dataset, out: h5py.Dataset) -> bool:
    """Whether ``out`` is ``np.clip(src, 0, None)`` bitwise, with the same shape and dtype."""
    want = np.clip(src[()], 0, None)
    got = out[()]
    return got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)


def verify(workload: str, root: Path) -> str | None:
    """None when the outputs are right, else what is wrong."""
    if workload == "datasets":
        pairs = [(root / "many.h5", root / "out" / "many.h5")]
    else:
        pairs = [(p, root / "out" / p.name) for p in sorted((root / "in").glob("*.h5"))]
    for src, dst in pairs:
        if not dst.exists():
            return f"missing {dst}"
        with h5py.File(src, "r") as fin, h5py.File(dst, "r") as fout:
            names: list[str] = []
            fin.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            for name in names:
                if name not in fout or not same(fin[name], fout[name]):
                    return f"{dst}:/{name} differs from np.clip"
    return None


def run_one(args: argparse.Namespace, work: dict[str, Any], spec: tuple[int, str | None]):
    """One timed run of one method on one workload; the record."""
    ranks, pythonpath = spec
    clean(work["root"])
    os.sync()  # the previous run's dirty pages, outside the timing
    cmd = command(args, work, ranks)
    record = launch(cmd, environment(pythonpath), work["root"], args.timeout)
    record["cmd"] = " ".join(cmd if ranks else [*cmd[:2], "<loop>", *cmd[3:]])
    return record


def rounds(args: argparse.Namespace, works: dict[str, dict], specs: dict) -> tuple[list, list]:
    """The warm-up round (verified) then the timed rounds; (runs, failures)."""
    runs, failures = interleaved(
        args.rounds,
        [(w, m) for w in works for m in specs],
        lambda w, m: run_one(args, works[w], specs[m]),
        lambda w: verify(w, works[w]["root"]),
        lambda r: f"round {r['round']} {r['workload']:8} {r['method']:10} {r['wall']:7.2f} s",
    )
    clean_all(works)
    return runs, failures


def clean_all(works: dict[str, dict]) -> None:
    """Remove every workload's outputs."""
    for work in works.values():
        clean(work["root"])


def summarize(runs: list[dict], works: dict[str, dict], specs: dict) -> list[dict[str, Any]]:
    """Per workload and method: median, min, max wall of the runs that succeeded, loop / method."""
    rows = []
    for workload in works:
        walls = {m: [r["wall"] for r in runs if r["returncode"] == 0
                     and (r["workload"], r["method"]) == (workload, m)] for m in specs}  # fmt: skip
        bar = statistics.median(walls["loop"]) if walls["loop"] else None
        for method, values in walls.items():
            if not values:  # every run failed: no timing to report
                continue
            median = statistics.median(values)
            rows.append({
                "workload": workload, "count": works[workload]["count"], "method": method,
                "median": median, "min": min(values), "max": max(values),
                "ratio": bar / median if bar else float("nan"),
                "target": TARGETS.get((workload, specs[method][0])),
            })  # fmt: skip
    return rows


def table(rows: list[dict[str, Any]], header: str) -> str:
    """The result table as text."""
    lines = [
        header,
        "",
        "workload   count  method       median s   min-max s     loop/method  target",
    ]
    for r in rows:
        target = f">= {r['target']:.1f}" if r["target"] is not None else ""
        mark = "" if r["target"] is None else (" ok" if r["ratio"] >= r["target"] else " MISS")
        lines.append(
            f"{r['workload']:9} {r['count']:6}  {r['method']:11} {r['median']:8.2f}"
            f"   {r['min']:5.2f}-{r['max']:<6.2f}  {r['ratio']:10.2f}   {target}{mark}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Prepare the inputs, run the rounds, print and save the table; the exit status."""
    args = parse_args(argv)
    specs = methods(args)
    workdir = args.workdir or args.results / "work"
    works = {w: prepare(args, w, workdir / w) for w in args.workloads.split(",")}
    runs, failures = rounds(args, works, specs)
    header = (
        f"h5par count benchmark: {args.rounds} rounds after a verified warm-up, wall seconds "
        f"of the whole command; datasets: {works.get('datasets', {}).get('count')} x "
        f"{args.length} float64 in one file; files: {works.get('files', {}).get('count')} x "
        f"{args.side}x{args.side} float64; variants: {args.variant or 'none'}"
    )
    rows = summarize(runs, works, specs) if runs else []
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs, "rows": rows}
    return save_results(args.results, "count", table(rows, header), failures, summary)


if __name__ == "__main__":
    sys.exit(main())
