"""h5par's benchmark suite: h5par against the usual ways of doing the same work, interleaved.

    make bench                                   # = python benchmarks/suite.py (2 GiB, 5 rounds)
    python benchmarks/suite.py [--size 2GiB] [--rounds 5] [--workloads clip,stats,astype]
        [--methods h5par,h5py-mpio,h5py,rowloop,dask,heat,cp] [--ranks 1,2] [--layout contiguous]
        [--workdir DIR] [--results DIR]          # --help for every option
    make bench-heat-setup && make bench          # + heat: --heat-python .venv-heat/bin/python

It writes its own input (float64, rows of ``--width`` values, contiguous or chunked + gzip),
then runs every method on every workload once per round, round-robin (both orders rotate by
one each round), after an untimed warm-up round that also verifies every method's output
against numpy. Each run is one command launched by this driver, so its *wall* time includes
interpreter start, imports and (for MPI methods) ``mpirun``; each method also reports its own
*inner* time (h5par: the ``seconds`` of its ``--report``), so launch overhead is visible.

Workloads: ``clip`` (``[[kernels]] name = "clip", min = 0.0``), ``stats`` (``reduce`` min, max,
mean, std; no output) and ``astype`` (float64 -> float32). Methods:

- ``h5par``: ``mpirun -n N python -m h5par run JOB --quiet --report R.json`` for each N of
  ``--ranks``, without ``mpirun`` for one rank, as a user runs it (through
  ``_suite_h5par_rank.py``, which runs the same ``h5par.app.cli.main`` and
  then records each rank's peak RSS); ``--h5par-variant`` adds tuned variants;
- ``h5py``: the best serial h5py code (blocked read_direct / write_direct, preallocated
  buffers, ``out=`` kernels, output with the input's layout and ``fill_time="never"``);
- ``h5py-mpio``: hand-written parallel h5py on ``--mpi-ranks`` ranks (collective writes);
- ``rowloop``: the book's row-by-row loop, timed on the first ``--rowloop-rows`` rows and
  extrapolated linearly (the report says so);
- ``dask``: dask.array over the h5py dataset, threaded scheduler, ``da.to_hdf5``;
- ``heat``: HeAT on ``--mpi-ranks`` ranks, run by ``--heat-python`` (default ``--python``),
  only when ``import heat`` works there (else "not installed"): HeAT needs torch, so it
  lives in its own virtual environment, ``.venv-heat`` (``make bench-heat-setup``);
- ``cp``: ``cp`` of the input file (``cp IN /dev/null`` for stats): the file-system floor
  for moving the same bytes.
- ``dd``: the ceiling of two writers: two ``dd`` processes at once, each copying half of
  the input, into one file (``dd-2-one-file``) and into two files (``dd-2-two-files``);
  for stats, both are two readers to ``/dev/null``. What any 2-rank method could reach here.

Outputs: the table on stdout (also ``suite.txt``), ``suite.json`` with every raw timing and
``suite.png`` (throughput with min-max bars, speed relative to serial h5py and to cp) in
``--results`` (default ``/tmp/h5par-bench-results/<time>``). The exit status is 1 when a
method failed or produced a wrong result.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from _suite_data import (
    DATASET,
    LAYOUTS,
    WORKLOADS,
    InputSpec,
    Workload,
    prefix_stats,
    prepare_input,
    remove,
    verify_output,
    verify_stats,
)
from _suite_report import add_ratios, plot, summarize, table

from h5par.core.sizes import parse_size

HERE = Path(__file__).resolve().parent
KINDS = ("h5par", "h5py-mpio", "h5py", "rowloop", "dask", "heat", "cp", "dd")


@dataclasses.dataclass(frozen=True)
class Method:
    """One way of doing a workload: how to launch it and what to call it."""

    key: str
    label: str
    kind: str
    ranks: int = 1
    sets: tuple[str, ...] = ()  # h5par --set KEY=VALUE
    env: tuple[tuple[str, str], ...] = ()  # extra environment (h5par variants)


@dataclasses.dataclass
class Context:
    """What every run needs: the input, the folders, the options."""

    spec: InputSpec
    source: Path
    reference: dict[str, float]
    workdir: Path
    args: argparse.Namespace
    env: dict[str, str]
    prefix_references: dict[int, dict[str, float]] = dataclasses.field(default_factory=dict)


# Command line.


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The suite's options (see ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="benchmarks/suite.py",
        description="h5par against serial h5py, hand-written h5py+mpio, the book's row loop, "
        "dask, HeAT and cp; interleaved rounds, verified outputs.",
    )
    data = parser.add_argument_group("input")
    data.add_argument("--size", default="2GiB", help="input bytes (default 2GiB)")
    data.add_argument("--width", type=int, default=1024, help="float64 values per row (1024)")
    data.add_argument("--shape", help="explicit shape, e.g. 4096,512,128 (overrides size/width)")
    data.add_argument("--layout", choices=LAYOUTS, default="contiguous")
    data.add_argument("--chunk-rows", type=int, default=128, help="rows per chunk (chunked)")
    data.add_argument("--gzip-level", type=int, default=4, help="gzip level (chunked-gzip)")
    data.add_argument("--seed", type=int, default=0)
    what = parser.add_argument_group("what runs")
    what.add_argument("--workloads", type=_csv, default=list(WORKLOADS), help="clip,stats,astype")
    what.add_argument("--methods", type=_csv, default=list(KINDS), help=",".join(KINDS))
    what.add_argument("--ranks", type=_csv, default=["1", "2"], help="h5par rank counts (1,2)")
    what.add_argument("--mpi-ranks", type=int, default=2, help="ranks of h5py-mpio and heat")
    what.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    what.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    tune = parser.add_argument_group("method settings")
    tune.add_argument("--block-mib", type=float, default=32.0, help="h5py block size (32)")
    tune.add_argument("--dask-chunk-mib", type=float, default=32.0, help="dask chunk size (32)")
    tune.add_argument(
        "--rowloop-rows",
        type=int,
        default=8192,
        help="rows the row loop is timed on, then extrapolated (0: all rows; default 8192)",
    )
    tune.add_argument(
        "--h5par-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="--set passed to every h5par run (e.g. run.memory=1GiB)",
    )
    tune.add_argument(
        "--h5par-variant",
        action="append",
        default=[],
        metavar="NAME[@RANKS]:ITEM[,ITEM]",
        help="an extra h5par method (at each --ranks count, or at RANKS, e.g. @2 or @1+2); "
        "ITEM is KEY=VALUE (an h5par --set) or env:VAR=VALUE, e.g. mem1g:run.memory=1GiB, "
        "fcoll@2:env:OMPI_MCA_fcoll=individual, old:env:PYTHONPATH=/other/checkout",
    )
    where = parser.add_argument_group("files")
    where.add_argument("--workdir", type=Path, help="input and outputs (default: a new /tmp dir)")
    where.add_argument("--keep-workdir", action="store_true", help="keep it (input is reused)")
    where.add_argument("--results", type=Path, help="suite.json/png/txt go here")
    where.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    where.add_argument("--python", default=sys.executable, help="interpreter of the runs")
    where.add_argument(
        "--heat-python",
        help="interpreter of the heat runs (default: --python); make bench-heat-setup makes "
        ".venv-heat/bin/python, with HeAT and torch",
    )
    args = parser.parse_args(argv)
    for name in args.workloads:
        if name not in WORKLOADS:
            parser.error(f"--workloads: unknown {name!r} (valid: {', '.join(WORKLOADS)})")
    for name in args.methods:
        if name not in KINDS:
            parser.error(f"--methods: unknown {name!r} (valid: {', '.join(KINDS)})")
    try:
        args.ranks = [int(r) for r in args.ranks]
        args.size = parse_size(args.size)
        args.variants = [Variant.parse(text) for text in args.h5par_variant]
    except ValueError as exc:
        parser.error(str(exc))
    if min(args.ranks) < 1 or args.mpi_ranks < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("ranks and rounds must be positive, warmup >= 0")
    args.heat_python = args.heat_python or args.python
    for option, python in (("--python", args.python), ("--heat-python", args.heat_python)):
        if shutil.which(python) is None:
            parser.error(f"{option}: no interpreter {python!r}")
    return args


@dataclasses.dataclass(frozen=True)
class Variant:
    """An extra h5par method: ``NAME[@RANKS]:ITEM[,ITEM...]`` of ``--h5par-variant``."""

    name: str
    ranks: tuple[int, ...] | None  # None: at every --ranks count
    sets: tuple[str, ...]
    env: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, text: str) -> Variant:
        """``mem1g:run.memory=1GiB``, ``indep@2:env:OMPI_MCA_fcoll=individual``..."""
        head, _, items = text.partition(":")
        name, _, ranks = head.partition("@")
        if not name or not items:
            raise ValueError(f"--h5par-variant {text!r}: expected NAME[@RANKS]:ITEM[,ITEM]")
        sets, env = [], []
        for item in _csv(items):
            if item.startswith("env:"):
                var, _, value = item[4:].partition("=")
                env.append((var, value))
            else:
                sets.append(item)
        counts = tuple(int(r) for r in ranks.split("+")) if ranks else None
        return cls(name, counts, tuple(sets), tuple(env))


def methods(args: argparse.Namespace) -> list[Method]:
    """The methods asked for, in table order."""
    chosen: list[Method] = []

    def plural(n: int) -> str:
        return f"{n} rank" + ("s" if n > 1 else "")

    for kind in KINDS:
        if kind not in args.methods:
            continue
        if kind == "h5par":
            for n in args.ranks:
                chosen.append(Method(f"h5par-{n}", f"h5par {plural(n)}", "h5par", n))
                for v in args.variants:
                    if v.ranks is None or n in v.ranks:
                        label = f"h5par {plural(n)} [{v.name}]"
                        chosen.append(Method(f"h5par-{n}-{v.name}", label, kind, n, v.sets, v.env))
        elif kind == "h5py-mpio":
            n = args.mpi_ranks
            chosen.append(Method(f"h5py-mpio-{n}", f"h5py+mpio {plural(n)}", kind, n))
        elif kind == "dd":
            chosen.append(Method("dd-2-one-file", "2x dd, one file", kind, 2))
            chosen.append(Method("dd-2-two-files", "2x dd, two files", kind, 2))
        elif kind == "heat":
            n = args.mpi_ranks
            chosen.append(Method(f"heat-{n}", f"heat {plural(n)}", kind, n))
        else:
            labels = {"h5py": "h5py serial", "rowloop": "row loop (book)", "dask": "dask threads"}
            chosen.append(Method(kind, labels.get(kind, kind), kind))
    return chosen


_PROBE = """
import importlib, json
found = {}
for name in ("numpy", "h5py", "mpi4py", "dask", "matplotlib", "heat", "torch", "h5par"):
    try:
        found[name] = {"version": str(importlib.import_module(name).__version__)}
    except Exception as exc:
        found[name] = {"error": f"{type(exc).__name__}: {exc}"}
print(json.dumps(found))
"""


def probe_modules(args: argparse.Namespace) -> dict[str, dict[str, str]]:
    """``{module: {"version": ...} or {"error": ...}}`` as the runs' interpreters import them.

    ``heat`` and ``torch`` as ``--heat-python`` imports them, when the heat method runs.
    """

    def probe(python: str) -> dict[str, dict[str, str]]:
        done = subprocess.run(
            [python, "-c", _PROBE], capture_output=True, text=True, timeout=600, check=True
        )
        found: dict[str, dict[str, str]] = json.loads(done.stdout)
        return found

    modules = probe(args.python)
    if "heat" in args.methods and args.heat_python != args.python:
        heat = probe(args.heat_python)
        modules.update(heat=heat["heat"], torch=heat["torch"])
    return modules


def availability(method: Method, modules: dict[str, dict[str, str]]) -> str | None:
    """None when ``method`` can run here, else why not ("not installed: ...")."""
    if method.kind in ("h5par", "h5py-mpio", "heat") and shutil.which("mpirun") is None:
        return "not available: mpirun not found"
    need = {"dask": "dask", "heat": "heat"}.get(method.kind)
    error = modules.get(need, {}).get("error") if need else None
    if error is None:
        return None
    if error.startswith("ModuleNotFoundError"):
        if need == "heat":
            return (
                "not installed (needs torch, ~6 GB, in its own venv: make bench-heat-setup, "
                "then --heat-python .venv-heat/bin/python, which make bench adds)"
            )
        return "not installed (pip install -e '.[bench]')"
    return f"not installed: import {need} failed ({error})"


# Running one method once.


def _cpu_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / tick, sum(fields[:8]) / tick


def _mpirun(n: int) -> list[str]:
    return ["mpirun", "--oversubscribe", "-n", str(n)]


def _job_text(ctx: Context, workload: Workload, output: Path | None) -> str:
    """The h5par job of ``workload`` (TOML; JSON literals are valid TOML values here)."""
    lines = [
        "version = 1",
        "[input]",
        f"path = {json.dumps(str(ctx.source))}",
        f'datasets = ["/{DATASET}"]',
    ]
    if output is not None:
        lines += ["[output]", f"path = {json.dumps(str(output))}"]
    for kernel in workload.kernels:
        lines.append("[[kernels]]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in kernel.items()]
    return "\n".join(lines) + "\n"


def command(
    ctx: Context, method: Method, workload: Workload, output: Path | None, tag: str
) -> tuple[list[str], dict[str, str], dict[str, Path]]:
    """The command line, environment and result files of one run."""
    args = ctx.args
    python = args.heat_python if method.kind == "heat" else args.python
    env = dict(ctx.env)
    files: dict[str, Path] = {}
    if method.kind == "cp":
        target = "/dev/null" if output is None else str(output)
        cp = ["cp", str(ctx.source), target]
        timer = shutil.which("time", path="/usr/bin:/bin")
        if timer is None:  # no GNU time: cp's peak RSS stays unknown
            return cp, env, files
        files["rss"] = ctx.workdir / f"rss-{tag}.txt"
        return [timer, "-f", "%M", "-o", str(files["rss"]), *cp], env, files
    if method.kind == "dd":
        return _dd_pair(ctx, method, output), env, files
    if method.kind == "h5par":
        job = ctx.workdir / f"job-{tag}.toml"
        job.write_text(_job_text(ctx, workload, output))
        files["report"] = ctx.workdir / f"report-{tag}.json"
        files["rss"] = ctx.workdir / f"rss-{tag}"
        env["H5PAR_SUITE_RSS"] = str(files["rss"])
        env.update(dict(method.env))
        if method.ranks > (os.cpu_count() or 1):
            env.setdefault("OMPI_MCA_mpi_yield_when_idle", "1")
        sets = [x for s in (*args.h5par_set, *method.sets) for x in ("--set", s)]
        launcher = _mpirun(method.ranks) if method.ranks > 1 else []  # as a user runs 1 rank
        cmd = [
            *launcher,
            python,
            str(HERE / "_suite_h5par_rank.py"),
            "run",
            str(job),
            "--quiet",
            "--report",
            str(files["report"]),
            *sets,
        ]
        return cmd, env, files
    files["result"] = ctx.workdir / f"result-{tag}.json"
    worker = [
        python,
        str(HERE / "_suite_workers.py"),
        method.kind,
        "--workload",
        workload.name,
        "--spec",
        json.dumps({**dataclasses.asdict(ctx.spec), "shape": list(ctx.spec.shape)}),
        "--input",
        str(ctx.source),
        "--result",
        str(files["result"]),
        "--block-mib",
        str(args.block_mib),
        "--dask-chunk-mib",
        str(args.dask_chunk_mib),
        "--rows-cap",
        str(args.rowloop_rows),
    ]
    if output is not None:
        worker += ["--output", str(output)]
    if method.ranks > 1 or method.kind in ("h5py-mpio", "heat"):
        if method.ranks > (os.cpu_count() or 1):
            env.setdefault("OMPI_MCA_mpi_yield_when_idle", "1")
        return [*_mpirun(method.ranks), *worker], env, files
    return worker, env, files


def _second_file(output: Path) -> Path:
    """Where ``dd-2-two-files`` writes the input's second half."""
    return output.with_name(output.name + ".2")


def _dd_pair(ctx: Context, method: Method, output: Path | None) -> list[str]:
    """Two ``dd`` at once, each moving half of the input (the two-writer ceiling)."""
    half = ctx.source.stat().st_size // 2
    common = f"if={ctx.source} bs=4M status=none"
    if output is None:
        first, second = "of=/dev/null", "of=/dev/null"
    elif method.key.endswith("two-files"):
        first, second = f"of={output}", f"of={_second_file(output)}"
    else:  # the second half at its own offset of the same file; neither truncates it (the
        # first dd opening it after the second wrote would cut the second half off)
        first = f"of={output} conv=notrunc"
        second = f"of={output} oflag=seek_bytes seek={half} conv=notrunc"
    script = (
        f"dd {common} {first} iflag=count_bytes count={half} & a=$!; "
        f"dd {common} {second} iflag=skip_bytes skip={half} & b=$!; "
        "wait $a && wait $b"
    )
    return ["sh", "-c", script]


def _launch(cmd: list[str], env: dict[str, str], log: Path, timeout: float) -> dict[str, Any]:
    """Run ``cmd`` to completion in its own session: exit status, wall and CPU seconds.

    wait4's ru_maxrss is not used: Linux seeds a child's maxrss at exec with the size of
    the process it was spawned from (this driver), so peak RSS comes from the runs.
    """
    mode = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    out = os.open(log.with_suffix(".out"), mode, 0o644)
    err = os.open(log.with_suffix(".err"), mode, 0o644)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, out, 1),
        (os.POSIX_SPAWN_DUP2, err, 2),
    ]
    before = _cpu_busy()
    t0 = time.perf_counter()
    try:
        pid = os.posix_spawnp(cmd[0], cmd, env, file_actions=actions, setsid=True)
    finally:
        os.close(out)
        os.close(err)

    def kill() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # the whole session: mpirun and its ranks

    timer = threading.Timer(timeout, kill)
    timer.start()
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    timer.cancel()
    after = _cpu_busy()
    cpu = usage.ru_utime + usage.ru_stime
    other = max(0.0, (after[0] - before[0]) - cpu) if after[1] else None
    return {
        "returncode": os.waitstatus_to_exitcode(status),
        "wall": wall,
        "cpu_seconds": cpu,
        "other_cpu_seconds": other,  # CPU time of everything else on the machine meanwhile
        "timed_out": wall >= timeout,
    }


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def _cleanup(output: Path | None) -> None:
    """Remove an output, the parts of a subfiled output and any h5par work folder."""
    if output is None:
        return
    remove(output)
    remove(_second_file(output))
    for folder in (f".{output.name}.h5par", f"{output.name}.parts"):
        shutil.rmtree(output.parent / folder, ignore_errors=True)


def run_once(
    ctx: Context, method: Method, workload: Workload, round_index: int, warmup: bool
) -> tuple[dict[str, Any], Path | None]:
    """One timed run; returns its record and its output (still on disk, for verification)."""
    output = (
        None if workload.out_dtype is None else ctx.workdir / f"out-{workload.name}-{method.key}.h5"
    )
    tag = f"{workload.name}-{method.key}-r{round_index}"
    _cleanup(output)
    cmd, env, files = command(ctx, method, workload, output, tag)
    for path in files.values():
        remove(path)
    os.sync()  # the previous run's dirty pages are written outside this run's timing
    record = _launch(cmd, env, ctx.workdir / f"log-{tag}", ctx.args.timeout)
    record.update(round=round_index, warmup=warmup, command=" ".join(cmd), inner=None)
    record["rss_kib"] = []
    if record["returncode"] != 0:
        record["error"] = _tail(ctx.workdir / f"log-{tag}.err") or _tail(
            ctx.workdir / f"log-{tag}.out"
        )
        return record, output
    if method.kind in ("cp", "dd"):
        record["inner"] = record["wall"]  # cp and dd have no launch cost to speak of
        record["rows_done"] = ctx.spec.rows
        if "rss" in files and files["rss"].is_file():
            record["rss_kib"] = [int(files["rss"].read_text().split()[-1])]
    elif method.kind == "h5par":
        report = json.loads(files["report"].read_text())
        record["inner"] = report["seconds"]
        record["rows_done"] = ctx.spec.rows
        record["h5par"] = {
            "seconds": report["seconds"],
            "busy_seconds": report["per_rank"]["busy_seconds"],
            "imbalance": report["per_rank"]["imbalance"],
            "bytes_read": report["bytes_read"],
            "bytes_written": report["bytes_written"],
        }
        reductions = report["files"][0]["reductions"].get(f"/{DATASET}")
        if reductions:
            record["stats"] = reductions
        rss = []
        for r in range(method.ranks):
            path = Path(f"{files['rss']}.{r}.json")
            rss.append(json.loads(path.read_text())["vmhwm_kib"] if path.is_file() else 0)
        record["rss_kib"] = rss
    else:
        result = json.loads(files["result"].read_text())
        record["inner"] = result["seconds"]
        record["rows_done"] = result["rows_done"]
        record["rss_kib"] = result["vmhwm_kib"]
        if "stats" in result:
            record["stats"] = result["stats"]
        if "chunks" in result:
            record["dask_chunks"] = result["chunks"]
    if record["rows_done"] < ctx.spec.rows:
        factor = ctx.spec.rows / record["rows_done"]
        record["extrapolated_inner"] = record["inner"] * factor
        record["extrapolated_wall"] = record["wall"] - record["inner"] + record["inner"] * factor
    return record, output


def verify(
    ctx: Context, method: Method, workload: Workload, record: dict[str, Any], output: Path | None
) -> dict[str, Any]:
    """Check one run's result against numpy (sampled rows, or the statistics)."""
    if method.kind == "cp":
        if output is None:
            return {"ok": True, "message": "read the whole input (cp to /dev/null)"}
        same = output.is_file() and output.stat().st_size == ctx.source.stat().st_size
        return {"ok": same, "message": "byte copy of the input (the floor; computes nothing)"}
    if method.kind == "dd":
        if output is None:
            return {"ok": True, "message": "two readers of one half each (dd to /dev/null)"}
        second = _second_file(output)
        written = sum(p.stat().st_size for p in (output, second) if p.is_file())
        same = written == ctx.source.stat().st_size
        return {"ok": same, "message": "byte copy by two writers (the ceiling; computes nothing)"}
    rows_done = record["rows_done"]
    partial = rows_done < ctx.spec.rows
    if workload.out_dtype is None:
        reference = ctx.reference
        if partial:
            if rows_done not in ctx.prefix_references:
                ctx.prefix_references[rows_done] = prefix_stats(ctx.source, rows_done)
            reference = ctx.prefix_references[rows_done]
        ok, message = verify_stats(record.get("stats", {}), reference)
        if partial:
            message += f" (over the {rows_done} rows processed)"
        return {"ok": ok, "message": message, "stats": record.get("stats")}
    assert output is not None
    ok, message, layout = verify_output(
        ctx.spec, workload, ctx.source, output, rows_done if partial else None
    )
    want = {
        "chunks": None if ctx.spec.chunks() is None else list(ctx.spec.chunks() or ()),
        "compression": None if ctx.spec.layout == "contiguous" else "gzip",
    }
    return {"ok": ok, "message": message, "layout": layout, "same_layout": layout == want}


# The whole suite.


def _environment(modules: dict[str, dict[str, str]]) -> dict[str, Any]:
    versions = {name: found.get("version") for name, found in modules.items()}
    mpirun = shutil.which("mpirun")
    mpi = (
        subprocess.run([mpirun, "--version"], capture_output=True, text=True, check=False)
        if mpirun
        else None
    )
    commit = subprocess.run(
        ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "-C", str(HERE), "status", "--porcelain"],
        capture_output=True,
        text=True,
        check=False,
    )
    meminfo = (
        Path("/proc/meminfo").read_text().split("\n")[0] if Path("/proc/meminfo").exists() else ""
    )
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "memory": meminfo.split(":")[-1].strip(),
        "python": platform.python_version(),
        "hdf5": h5py.version.hdf5_version,
        "mpi": None if mpi is None else mpi.stdout.splitlines()[0],
        "versions": versions,
        "git_commit": commit.stdout.strip() or None,
        "git_dirty": bool(dirty.stdout.strip()),
        "load_average_at_start": os.getloadavg(),
        "tuning_environment": {
            k: v
            for k, v in os.environ.items()
            if k.startswith(("OMPI_MCA_", "ROMIO_", "HDF5_", "MALLOC_", "OMP_", "H5PAR_"))
        },
    }


def _notes(
    ctx: Context, results: dict[str, Any], other_load: list[tuple[float, float]]
) -> list[str]:
    args = ctx.args
    gib = ctx.spec.nbytes / 2**30
    notes = [
        f"the {gib:.2f} GiB input stays in the page cache ({results['environment']['memory']} "
        "RAM): these are memory-side figures (page cache to page cache), not disk bandwidth; "
        "outputs are not fsynced, and os.sync() runs before every run outside its timing",
        "every run is one command: wall includes interpreter start, imports and mpirun; "
        "inner is the method's own timer (h5par: the 'seconds' of --report)",
        "peak RSS = VmHWM per rank (h5par: read after h5par.app.cli.main on every rank; "
        "baselines: their own /proc/self/status; cp: GNU time's %M when /usr/bin/time exists)",
        "cp: for stats 'cp INPUT /dev/null' (reads only); for astype cp writes twice the bytes "
        "the float32 output needs, so there it is not a strict floor",
    ]
    if "dd" in args.methods:
        notes.append(
            "2x dd: two dd processes at once, each moving half of the input, into one file and "
            "into two files (for stats: two readers); the ceiling of any 2-rank method here"
        )
    if "rowloop" in args.methods and 0 < args.rowloop_rows < ctx.spec.rows:
        share = 100 * args.rowloop_rows / ctx.spec.rows
        notes.append(
            f"* row loop timed on the first {args.rowloop_rows} of {ctx.spec.rows} rows "
            f"({share:.1f}%) and extrapolated linearly: wall = launch + loop time x "
            f"{ctx.spec.rows / args.rowloop_rows:.1f}"
        )
    if other_load:
        cpus = results["environment"]["cpus"] or 1
        share = sum(cpu for cpu, _ in other_load) / sum(wall * cpus for _, wall in other_load)
        busy = [cpu / (wall * cpus) for cpu, wall in other_load if wall >= 0.5]
        high = sum(1 for v in busy if v > 0.25)
        notes.append(
            f"other processes used {share:.0%} of the machine's CPU time during the timed runs "
            "(/proc/stat minus the runs' own CPU)"
            + (
                f"; {high} of {len(busy)} runs of 0.5 s or more saw over 25%: other work was "
                "running on the machine and slows every method (the interleaving spreads it)"
                if high
                else ""
            )
        )
    notes.append(
        f"timings on this machine swing up to 2x between runs: compare methods within one "
        f"run; {args.rounds} timed rounds, orders rotated each round"
    )
    return notes


def run_suite(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    """Generate the input, run every round, verify, summarize. Returns (results, exit status)."""
    started = datetime.datetime.now().astimezone()
    owned = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="h5par-suite-", dir="/tmp")) if owned else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    options = {
        "layout": args.layout,
        "chunk_rows": args.chunk_rows,
        "gzip_level": args.gzip_level,
        "seed": args.seed,
    }
    if args.shape:
        spec = InputSpec(shape=tuple(int(v) for v in _csv(args.shape)), **options)
    else:
        spec = InputSpec.from_size(args.size, args.width, **options)
    env = dict(os.environ)
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    print(f"[suite] work folder {workdir}", flush=True)
    t0 = time.perf_counter()
    source, reference, reused = prepare_input(spec, workdir)
    made = time.perf_counter() - t0
    print(
        f"[suite] input {source} {spec.shape} {spec.layout}: "
        f"{'reused' if reused else f'written in {made:.1f} s'}",
        flush=True,
    )
    os.sync()
    ctx = Context(spec, source, reference, workdir, args, env)
    chosen = methods(args)
    modules = probe_modules(args)
    results: dict[str, Any] = {
        "suite": "h5par benchmarks/suite.py",
        "command": " ".join([sys.argv[0], *sys.argv[1:]]),
        "started": started.isoformat(timespec="seconds"),
        "environment": _environment(modules),
        "input": {
            **spec.describe(),
            "file_bytes": source.stat().st_size,
            "reference_stats": reference,
            "generate_seconds": None if reused else made,
        },
        "config": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k != "variants"  # as given: h5par_variant
        },
        "methods": {},
        "workloads": {},
        "rounds": [],
    }
    runnable: list[Method] = []
    for method in chosen:
        why = availability(method, modules)
        results["methods"][method.key] = {
            "label": method.label,
            "kind": method.kind,
            "ranks": method.ranks,
            "sets": list(method.sets),
            "env": dict(method.env),
            "available": why is None,
            "reason": why,
        }
        if why is None:
            runnable.append(method)
        else:
            print(f"[suite] {method.label}: {why}; skipped", flush=True)
    for name in args.workloads:
        workload = WORKLOADS[name]
        results["workloads"][name] = {
            "description": workload.description,
            "methods": {
                m.key: {
                    "label": m.label,
                    "status": "pending" if m in runnable else "skipped",
                    "reason": results["methods"][m.key]["reason"],
                    "runs": [],
                }
                for m in chosen
            },
        }
    verified: set[tuple[str, str]] = set()
    failed = False
    other_load: list[tuple[float, float]] = []  # (other processes' CPU s, wall s) per run
    total_rounds = args.warmup + args.rounds
    for r in range(total_rounds):
        warmup = r < args.warmup
        names = (
            args.workloads[r % len(args.workloads) :] + args.workloads[: r % len(args.workloads)]
        )
        order = runnable[r % max(1, len(runnable)) :] + runnable[: r % max(1, len(runnable))]
        results["rounds"].append({"round": r, "warmup": warmup, "load_average": os.getloadavg()})
        tick = time.perf_counter()
        for name in names:
            workload = WORKLOADS[name]
            for method in order:
                entry = results["workloads"][name]["methods"][method.key]
                record, output = run_once(ctx, method, workload, r, warmup)
                if record["other_cpu_seconds"] is not None and not warmup:
                    other_load.append((record["other_cpu_seconds"], record["wall"]))
                if record["returncode"] != 0:
                    failed = True
                    entry["status"] = "failed"
                    entry["reason"] = (
                        f"exit status {record['returncode']}: {record.get('error', '')}"
                    )
                    print(f"[suite] {name} {method.label} FAILED: {entry['reason']}", flush=True)
                elif (name, method.key) not in verified:
                    check = verify(ctx, method, workload, record, output)
                    check["round"] = r
                    entry["verification"] = check
                    verified.add((name, method.key))
                    if not check["ok"]:
                        failed = True
                        entry["status"] = "wrong"
                        print(
                            f"[suite] {name} {method.label} WRONG: {check['message']}", flush=True
                        )
                _cleanup(output)
                entry["runs"].append(record)
        kind = "warm-up" if warmup else "timed"
        print(
            f"[suite] round {r + 1}/{total_rounds} ({kind}) done in "
            f"{time.perf_counter() - tick:.1f} s",
            flush=True,
        )
    for workload in results["workloads"].values():
        for entry in workload["methods"].values():
            if entry["status"] == "pending":
                entry["status"] = "ok"
            if entry["status"] != "skipped":
                entry["summary"] = summarize(entry, spec.nbytes)
        add_ratios(workload)
    results["notes"] = _notes(ctx, results, other_load)
    results["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    if owned and not args.keep_workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        for leftover in workdir.glob("out-*.h5"):
            _cleanup(leftover)
    return results, 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite and write the table, the JSON and the PNG."""
    args = parse_args(argv)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = args.results or Path("/tmp/h5par-bench-results") / stamp
    folder.mkdir(parents=True, exist_ok=True)
    results, status = run_suite(args)
    text = table(results)
    print(text, flush=True)
    (folder / "suite.txt").write_text(text + "\n")
    (folder / "suite.json").write_text(json.dumps(results, indent=1, default=_json_default) + "\n")
    try:
        plot(results, folder / "suite.png")
        png = f", {folder / 'suite.png'}"
    except ImportError as exc:
        png = f" (no plot: {exc}; pip install -e '.[bench]')"
        status = 1
    print(f"[suite] wrote {folder / 'suite.txt'}, {folder / 'suite.json'}{png}", flush=True)
    return status


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crashing run leaves no core file
    sys.exit(main())
