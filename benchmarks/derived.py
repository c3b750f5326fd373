"""Wind speed from two fields: h5par against NCO's ncap2 and a serial numpy + h5py loop (issue 19).

    .venv/bin/python benchmarks/derived.py [--rounds 3] [--size 1GiB] [--workloads copy,only]

The input is a netCDF-4 file written by netCDF4-python: ``u`` and ``v``, float32
``(t, 1024, 1024)`` of ``--size`` each (contiguous, as netCDF writes fixed-size variables),
with coordinate variables. Every method computes ``sqrt(u**2 + v**2)`` into a new file:

- workload ``copy``: the output is the input plus ``speed`` (what ``ncap2 -s`` writes);
- workload ``only``: the output holds ``speed`` and its coordinates (``ncap2 -v -s``;
  h5par's ``unselected = "drop"``).

Methods: ``ncap2`` (``ncap2 -O [-v] -s 'speed=sqrt(u*u+v*v)'``, one process), ``serial`` (a
numpy + h5py loop over 64 MiB slabs: the input copied with ``shutil.copyfile`` for
``copy``, then ``speed`` written slab by slab), ``h5par-1`` and ``h5par-2`` (``h5par run`` of
a ``[[derived]]`` job on 1 process and under ``mpirun -n 2``). An untimed warm-up round
verifies every output (h5par and serial bitwise against numpy on the whole arrays, ncap2
within a relative 2e-7, about one float32 ulp); then ``--rounds`` rounds run every method
once, the order rotating. Ratios are the faster of ncap2 and serial over each method; the
target is h5par 2 ranks >= 1.5.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from _runner import h5par_command, peer_table, save_results, timed, verified_rounds

from h5par.core.sizes import parse_size

WORKLOADS = ("copy", "only")
METHODS = ("ncap2", "serial", "h5par-1", "h5par-2")
TARGET = 1.5
SERIAL = """
import shutil, sys, h5py, numpy as np
src, out, workload = sys.argv[1:4]
if workload == "copy":
    shutil.copyfile(src, out)
with h5py.File(src, "r") as fin, h5py.File(out, "r+" if workload == "copy" else "w") as fout:
    u, v = fin["u"], fin["v"]
    if workload == "only":
        for name in ("t", "y", "x"):
            fout[name] = fin[name][...]
    speed = fout.create_dataset("speed", u.shape, "f4")
    step = max(1, (64 << 20) // (4 * u.shape[1] * u.shape[2]))
    for a in range(0, u.shape[0], step):
        x, y = u[a : a + step], v[a : a + step]
        speed[a : a + step] = np.sqrt(x**2 + y**2)
"""
JOB = """[input]
path = "in.nc"
datasets = []
[output]
path = "out/out.nc"
unselected = "{unselected}"
[[derived]]
path = "/speed"
expression = "sqrt(u**2 + v**2)"
inputs = {{ u = "/u", v = "/v" }}
[run]
memory = "256MiB"
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated")
    p.add_argument("--size", default="1GiB", help="bytes of each of u and v")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--mpirun", default="mpirun")
    p.add_argument("--results", type=Path, default=Path(f"/tmp/h5par-derived-results/{stamp}"))
    return p.parse_args(argv)


def make_input(path: Path, size: int) -> tuple[int, ...]:
    """u and v of ``size`` bytes each, written by netCDF4-python in 64 MiB slabs."""
    import netCDF4

    shape = (max(1, size // (4 << 20)), 1024, 1024)
    rng = np.random.default_rng(19)
    with netCDF4.Dataset(path, "w") as d:
        for name, n in zip(("t", "y", "x"), shape, strict=True):
            d.createDimension(name, n)
            d.createVariable(name, "f8", (name,))[:] = np.arange(n)
        for name in ("u", "v"):
            var = d.createVariable(name, "f4", ("t", "y", "x"))
            var.set_auto_mask(False)
            for a in range(0, shape[0], 16):
                var[a : a + 16] = rng.normal(size=(min(16, shape[0] - a), *shape[1:])).astype("f4")
    return shape


def command(args: argparse.Namespace, workload: str, method: str, root: Path) -> list[str]:
    """The command line of one run, every process under GNU time (peak RSS) when present."""
    if method == "ncap2":
        run = ["ncap2", "-O", *(["-v"] if workload == "only" else [])]
        run += ["-s", "speed=sqrt(u*u+v*v)", "in.nc", "out/out.nc"]
    elif method == "serial":
        run = [args.python, "-c", SERIAL, "in.nc", "out/out.nc", workload]
    else:
        ranks = int(method[-1])
        return h5par_command(args.python, args.mpirun, f"{workload}.toml", ranks, root / "rss.txt")
    return timed(run, root / "rss.txt")


def verify(root: Path, workload: str, method: str) -> str | None:
    """None when ``speed`` is numpy's (ncap2: within 2e-7 relative) and the output is complete."""
    with h5py.File(root / "in.nc", "r") as fin, h5py.File(root / "out" / "out.nc", "r") as fout:
        if ("u" in fout) != (workload == "copy"):
            return f"u {'missing' if workload == 'copy' else 'kept'}"
        u, v, speed = fin["u"], fin["v"], fout["speed"]
        for a in range(0, u.shape[0], 16):
            want, got = np.sqrt(u[a : a + 16] ** 2 + v[a : a + 16] ** 2), speed[a : a + 16]
            if method == "ncap2" and not np.allclose(got, want, rtol=2e-7, atol=0):
                return f"planes {a}:{a + 16} differ from numpy by more than 2e-7 relative"
            if method != "ncap2" and got.tobytes() != want.tobytes():
                return f"planes {a}:{a + 16} differ from numpy"
    return None


def summarize(runs: list[dict[str, Any]], workloads: list[str]) -> tuple[list[dict], str]:
    """Per workload and method: median, min, max, peak RSS, ratio to the faster peer."""
    methods = {w: list(METHODS) for w in workloads}
    return peer_table(runs, methods, {"ncap2", "serial"}, TARGET)


def main(argv: list[str] | None = None) -> int:
    """Prepare the input, run the rounds, print and save the table; the exit status."""
    args = parse_args(argv)
    root = args.results / "work"
    root.mkdir(parents=True, exist_ok=True)
    shape = make_input(root / "in.nc", parse_size(args.size))
    workloads = args.workloads.split(",")
    for workload in workloads:
        unselected = "copy" if workload == "copy" else "drop"
        (root / f"{workload}.toml").write_text(JOB.format(unselected=unselected))
    runs, failures = verified_rounds(
        args.rounds,
        [(w, m) for w in workloads for m in METHODS],
        root,
        lambda w, m: command(args, w, m, root),
        lambda w, m: verify(root, w, m),
        args.timeout,
        (5, 8),
    )
    rows, text = summarize(runs, workloads)
    size = (root / "in.nc").stat().st_size / 2**30
    header = (f"h5par derived benchmark: wind speed sqrt(u**2 + v**2), u and v float32 "
              f"{shape} each, input {size:.2f} GiB on disk; {args.rounds} rounds after a "
              f"verified warm-up, wall seconds of the whole command; peer = the faster of "
              f"ncap2 and serial")  # fmt: skip
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs, "rows": rows}
    return save_results(args.results, "derived", f"{header}\n\n{text}", failures, summary)


if __name__ == "__main__":
    sys.exit(main())
