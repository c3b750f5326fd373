"""What the count and chunked benchmarks share: launching one run, timed, in its own session."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    "OMPI_MCA_mpi_yield_when_idle": "1",
}


def environment(pythonpath: str | None) -> dict[str, str]:
    """This process's environment with the MPI settings and the checkout to import."""
    env = {**os.environ, **MPI_ENV}
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def kill_session(sid: int) -> None:
    """SIGKILL every process of session ``sid``: mpirun puts its ranks in their own groups."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[3]) == sid:  # fields after the name: state ppid pgrp session
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(stat.parent.name), signal.SIGKILL)


def launch(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float) -> dict[str, Any]:
    """Run ``cmd`` in its own session; wall seconds, exit status and the tail of stderr."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True, text=True,
    )  # fmt: skip
    try:
        _, err = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        kill_session(proc.pid)
        _, err = proc.communicate()
        timed_out = True
    wall = time.perf_counter() - t0
    return {"wall": wall, "returncode": proc.returncode, "timed_out": timed_out, "err": err[-2000:]}


def interleaved(
    rounds: int,
    pairs: list[tuple[str, str]],
    run: Callable[[str, str], dict[str, Any]],
    verify: Callable[[str], str | None],
    line: Callable[[dict[str, Any]], str],
) -> tuple[list[dict[str, Any]], list[str]]:
    """A verified warm-up round, then ``rounds`` timed ones; (timed runs, failures).

    Every (workload, method) pair runs once per round, the order rotating by one each
    round; ``run`` returns a :func:`launch` record, ``verify(workload)`` checks the output
    of a warm-up run (None: right), ``line`` formats the progress line of a record.
    """
    runs: list[dict[str, Any]] = []
    failures: list[str] = []
    for number in range(rounds + 1):
        shift = number % len(pairs)
        for workload, method in pairs[shift:] + pairs[:shift]:
            record = run(workload, method)
            record.update(workload=workload, method=method, round=number)
            problem = None
            if record["returncode"] != 0:
                problem = f"exit {record['returncode']}: {record['err'].strip()[-300:]}"
            elif number == 0:
                problem = verify(workload)
            if problem:
                failures.append(f"{workload} {method} round {number}: {problem}")
                print(f"FAIL {failures[-1]}", file=sys.stderr)
            if number:
                runs.append(record)
            print(line(record), flush=True)
    return runs, failures


def rss_line(record: dict[str, Any], widths: tuple[int, int] = (10, 17)) -> str:
    """The progress line of a run: round, workload, method, wall seconds, peak RSS."""
    rss = max(record.get("rss_mib") or [0])
    workload, method = widths
    return (f"round {record['round']} {record['workload']:{workload}} "
            f"{record['method']:{method}} {record['wall']:7.2f} s  peak RSS {rss:6.0f} MiB")  # fmt: skip


def save_results(
    folder: Path, name: str, text: str, failures: list[str], summary: dict[str, Any]
) -> int:
    """Print the table ``text`` (and the failures), save ``NAME.txt`` and ``NAME.json``.

    Returns the exit status: 1 when a run failed or an output was wrong.
    """
    if failures:
        text += "\n\nFAILED:\n" + "\n".join(failures)
    print(text)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text(text + "\n")
    (folder / f"{name}.json").write_text(json.dumps({**summary, "failures": failures}, indent=1))
    print(f"\nresults: {folder}")
    return 1 if failures else 0


def timed(run: list[str], rss: Path) -> list[str]:
    """``run`` under GNU time appending each process's peak RSS (KiB) to ``rss``, if present."""
    timer = shutil.which("time", path="/usr/bin:/bin")
    return run if timer is None else [timer, "-a", "-o", str(rss), "-f", "%M", *run]


def h5par_command(python: str, mpirun: str, job: str, ranks: int, rss: Path) -> list[str]:
    """``h5par run JOB --quiet`` on one process or under ``mpirun -n RANKS``, :func:`timed`."""
    launcher = ["-m", "mpi4py"] if ranks > 1 else []
    run = timed([python, *launcher, "-m", "h5par", "run", job, "--quiet"], rss)
    return [mpirun, "-n", str(ranks), *run] if ranks > 1 else run


def run_in(root: Path, cmd: list[str], timeout: float) -> dict[str, Any]:
    """One timed run of ``cmd`` (built with :func:`timed` on ``root/rss.txt``) in ``root``.

    ``root/out`` is emptied first and dirty pages synced outside the timing; the record is
    :func:`launch`'s with ``rss_mib``, the peak RSS of each process.
    """
    shutil.rmtree(root / "out", ignore_errors=True)
    (root / "out").mkdir()
    os.sync()
    (root / "rss.txt").unlink(missing_ok=True)
    record = launch(cmd, environment(None), root, timeout)
    if (root / "rss.txt").exists():
        text = (root / "rss.txt").read_text().split()
        record["rss_mib"] = [int(x) / 1024 for x in text if x.isdigit()]
    return record


def verified_rounds(
    rounds: int,
    pairs: list[tuple[str, str]],
    root: Path,
    command: Callable[[str, str], list[str]],
    verify: Callable[[str, str], str | None],
    timeout: float,
    widths: tuple[int, int],
) -> tuple[list[dict[str, Any]], list[str]]:
    """:func:`interleaved` rounds of :func:`run_in` ``root``, ``command(workload, method)``.

    ``verify(workload, method)`` checks a warm-up run's output; ``root/out`` goes at the end.
    """
    last: dict[str, str] = {}

    def run(workload: str, method: str) -> dict[str, Any]:
        last[workload] = method
        return run_in(root, command(workload, method), timeout)

    try:
        return interleaved(
            rounds, pairs, run, lambda w: verify(w, last[w]), lambda r: rss_line(r, widths)
        )
    finally:
        shutil.rmtree(root / "out", ignore_errors=True)


def peer_table(
    runs: list[dict[str, Any]],
    methods: dict[str, list[str]],
    peers: set[str],
    target: float,
    widths: tuple[int, int] = (9, 10),
) -> tuple[list[dict[str, Any]], str]:
    """Per workload and method: median, min-max, peak RSS, the fastest peer ÷ the method.

    ``methods`` maps each workload to its methods, ``peers`` names the methods compared
    against; ``h5par-2`` gets the verdict against ``target``.
    """
    rows, lines = [], []
    for workload, names in methods.items():
        mine = [r for r in runs if r["workload"] == workload and r["returncode"] == 0]
        walls = {m: [r["wall"] for r in mine if r["method"] == m] for m in names}
        medians = {m: statistics.median(w) for m, w in walls.items() if w}
        peer = min((v for m, v in medians.items() if m in peers), default=None)
        for method, values in walls.items():
            if not values:
                continue
            rss = max(
                (x for r in mine if r["method"] == method for x in r.get("rss_mib", [])), default=0
            )
            ratio = None if peer is None else peer / medians[method]
            verdict = ""
            if method == "h5par-2" and ratio is not None:
                verdict = f">= {target} {'ok' if ratio >= target else 'MISS'}"
            rows.append({"workload": workload, "method": method, "median": medians[method],
                         "min": min(values), "max": max(values), "rss_mib": rss,
                         "ratio": ratio, "target": verdict})  # fmt: skip
            lines.append(f"{workload:{widths[0]}}{method:{widths[1]}}{medians[method]:9.2f} "
                         f"{min(values):7.2f}-{max(values):<7.2f}{rss:8.0f} MiB  "
                         f"{ratio or 0:6.2f}  {verdict}")  # fmt: skip
    head = f"{'workload':{widths[0]}}{'method':{widths[1]}}{'median s':>9} {'min-max s':>15}{'peak RSS':>12}  peer/method"
    return rows, "\n".join([head, *lines])
