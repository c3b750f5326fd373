"""Series over many dumps: h5par against NCO (ncrcat, ncra, nces) and CDO (issue 20).

    .venv/bin/python benchmarks/series.py [--rounds 3] [--dumps 48] [--plane 512] [--steps 16]

The input is ``--dumps`` netCDF-4 files written by netCDF4-python, each with three float32
fields ``T``, ``u``, ``v`` of ``(steps, plane, plane)`` on an unlimited ``time`` axis (with
its coordinate, units and calendar, as CDO wants them) and ``lat``/``lon`` coordinates.
Workloads and their peers, each writing one file:

- ``concat``: one time series of all dumps: ``ncrcat``, ``cdo mergetime``, h5par
  ``combine = "concat"``;
- ``timmean``: the time mean over all dumps: ``ncra``, ``cdo timmean -mergetime``, h5par
  concat + ``reduce`` mean along axis 0;
- ``ensmean``: the dumps as ensemble members, their mean: ``nces``, ``cdo ensmean``, h5par
  ``combine = "stack"`` + ``reduce`` mean along axis 0.

h5par runs on 1 process (``h5par-1``) and under ``mpirun -n 2`` (``h5par-2``). An untimed
warm-up round verifies every output against numpy on the whole arrays (copies bitwise, means
within 1e-12 relative for h5par's float64 and 1e-6 for the peers' float32); then ``--rounds``
rounds run every method once, the order rotating. The ratio is the fastest peer over each
method; the issue's target is h5par 2 ranks >= 1.5 on each workload. CDO is left out when
it is not installed (``apt-get install cdo``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from _runner import h5par_command, peer_table, save_results, timed, verified_rounds

WORKLOADS = ("concat", "timmean", "ensmean")
FIELDS = ("T", "u", "v")
TARGET = 1.5
PEERS = {
    "concat": {"ncrcat": ["ncrcat", "-O"], "cdo": ["cdo", "-s", "-O", "mergetime"]},
    "timmean": {"ncra": ["ncra", "-O"], "cdo": ["cdo", "-s", "-O", "timmean", "-mergetime"]},
    "ensmean": {"nces": ["nces", "-O"], "cdo": ["cdo", "-s", "-O", "ensmean"]},
}
JOB = """[input]
path = "dumps/dump_*.nc"
combine = "{combine}"
[output]
path = "out/out.nc"
[run]
memory = "256MiB"
"""
MEAN = '[[kernels]]\nname = "reduce"\nop = "mean"\naxis = 0\n'


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated")
    p.add_argument("--dumps", type=int, default=48)
    p.add_argument("--steps", type=int, default=16, help="time steps per dump")
    p.add_argument("--plane", type=int, default=512, help="each field is steps x plane x plane")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--mpirun", default="mpirun")
    p.add_argument("--results", type=Path, default=Path(f"/tmp/h5par-series-results/{stamp}"))
    return p.parse_args(argv)


def make_dumps(folder: Path, dumps: int, steps: int, plane: int) -> None:
    """The dumps, as a model writes them through netCDF4-python."""
    import netCDF4

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20)
    for k in range(dumps):
        with netCDF4.Dataset(folder / f"dump_{k:03d}.nc", "w") as d:
            d.createDimension("time", None)
            for name in ("lat", "lon"):
                d.createDimension(name, plane)
                d.createVariable(name, "f8", (name,))[:] = np.linspace(-90, 90, plane)
            time_ = d.createVariable("time", "f8", ("time",))
            time_.units, time_.calendar = "hours since 2000-01-01 00:00:00", "standard"
            time_[:] = np.arange(k * steps, (k + 1) * steps)
            for name in FIELDS:
                var = d.createVariable(name, "f4", ("time", "lat", "lon"))
                var.set_auto_mask(False)
                var[:] = rng.normal(280.0, 5.0, (steps, plane, plane)).astype("f4")


def methods(workload: str) -> list[str]:
    """The methods of a workload: its peers that are installed, then h5par."""
    peers = [m for m, cmd in PEERS[workload].items() if shutil.which(cmd[0])]
    return [*peers, "h5par-1", "h5par-2"]


def command(args: argparse.Namespace, workload: str, method: str, root: Path) -> list[str]:
    """The command line of one run, every process under GNU time (peak RSS) when present."""
    if method in PEERS[workload]:
        files = sorted(str(p.relative_to(root)) for p in (root / "dumps").glob("dump_*.nc"))
        return timed([*PEERS[workload][method], *files, "out/out.nc"], root / "rss.txt")
    ranks = int(method[-1])
    return h5par_command(args.python, args.mpirun, f"{workload}.toml", ranks, root / "rss.txt")


def verify(root: Path, workload: str, method: str) -> str | None:
    """None when the output holds numpy's result for every field (see the module's doc)."""
    files = sorted((root / "dumps").glob("dump_*.nc"))
    with h5py.File(root / "out" / "out.nc", "r") as out:
        for name in FIELDS:
            got = out[name]
            if workload == "concat":
                start = 0
                for path in files:
                    with h5py.File(path, "r") as f:
                        part = f[name][...]
                    if got[start : start + len(part)].tobytes() != part.tobytes():
                        return f"{name}: the part of {path.name} differs"
                    start += len(part)
                if start != got.shape[0]:
                    return f"{name}: {got.shape[0]} steps, not {start}"
                continue
            total = None
            for path in files:
                with h5py.File(path, "r") as f:
                    part = f[name][...].astype("f8")
                part = part.sum(0) if workload == "timmean" else part
                total = part if total is None else total + part
            assert total is not None
            count = (
                sum(h5py.File(p, "r")[name].shape[0] for p in files)
                if workload == "timmean"
                else len(files)
            )
            want, mean = total / count, np.squeeze(got[...])
            rtol = 1e-12 if method.startswith("h5par") else 1e-6
            if mean.shape != want.shape or not np.allclose(mean, want, rtol=rtol, atol=0):
                return f"{name}: the mean differs from numpy's by more than {rtol} relative"
    return None


def summarize(runs: list[dict[str, Any]], workloads: list[str]) -> tuple[list[dict[str, Any]], str]:
    """Per workload and method: median, min, max, peak RSS, fastest peer / method."""
    peers = {m for w in workloads for m in PEERS[w]}
    return peer_table(runs, {w: methods(w) for w in workloads}, peers, TARGET, (9, 9))


def main(argv: list[str] | None = None) -> int:
    """Prepare the dumps, run the rounds, print and save the table; the exit status."""
    args = parse_args(argv)
    root = args.results / "work"
    make_dumps(root / "dumps", args.dumps, args.steps, args.plane)
    workloads = args.workloads.split(",")
    jobs = {"concat": ("concat", ""), "timmean": ("concat", MEAN), "ensmean": ("stack", MEAN)}
    for workload in workloads:
        combine, kernels = jobs[workload]
        (root / f"{workload}.toml").write_text(JOB.format(combine=combine) + kernels)
    runs, failures = verified_rounds(
        args.rounds,
        [(w, m) for w in workloads for m in methods(w)],
        root,
        lambda w, m: command(args, w, m, root),
        lambda w, m: verify(root, w, m),
        args.timeout,
        (8, 8),
    )
    rows, text = summarize(runs, workloads)
    size = sum(p.stat().st_size for p in (root / "dumps").iterdir()) / 2**30
    header = (f"h5par series benchmark: {args.dumps} netCDF-4 dumps of {len(FIELDS)} float32 "
              f"fields ({args.steps}, {args.plane}, {args.plane}), {size:.2f} GiB; "
              f"{args.rounds} rounds after a verified warm-up, wall seconds of the whole "
              f"command; peer = the fastest of NCO and CDO")  # fmt: skip
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs, "rows": rows}
    return save_results(args.results, "series", f"{header}\n\n{text}", failures, summary)


if __name__ == "__main__":
    sys.exit(main())
