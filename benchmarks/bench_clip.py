"""Clip negatives: h5par vs a hand-written h5py+mpio script vs serial h5py, side by side.

    mpirun -n 2 python -m mpi4py benchmarks/bench_clip.py [--gib 1] [--rounds 3] [--dir D]

The three variants run interleaved in each round (timings on a shared machine swing a lot
between runs; compare ratios within one run). The hand-written script is what users write
from the h5py docs: every rank creates the output collectively and writes its rows with
``dset.collective`` in blocks. The serial baseline is rank 0 alone with plain h5py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import h5py
import numpy as np
from mpi4py import MPI

import h5par
from h5par.core.decomposition import split_extent

ROW = 1 << 16  # float64 elements per row (512 KiB)
BLOCK_ROWS = 64  # rows per read/write in the hand-written and serial variants (32 MiB)


def make_input(path: str, gib: float) -> int:
    rows = int(gib * 2**30) // (ROW * 8)
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("field", (rows, ROW), dtype="f8")
        rng = np.random.default_rng(0)
        for start in range(0, rows, BLOCK_ROWS):
            n = min(BLOCK_ROWS, rows - start)
            dset[start : start + n] = rng.normal(size=(n, ROW))
    return rows


def hand_written(src: str, dst: str, comm: MPI.Comm) -> None:
    with (
        h5py.File(src, "r", driver="mpio", comm=comm) as fin,
        h5py.File(dst, "w", driver="mpio", comm=comm) as fout,
    ):
        din = fin["field"]
        dout = fout.create_dataset("field", din.shape, din.dtype)
        start, stop = split_extent(din.shape[0], comm.size, comm.rank)
        rounds = -(
            -max(
                b - a
                for a, b in (split_extent(din.shape[0], comm.size, r) for r in range(comm.size))
            )
            // BLOCK_ROWS
        )
        for i in range(rounds):  # the same number of collective calls on every rank
            a = min(start + i * BLOCK_ROWS, stop)
            b = min(a + BLOCK_ROWS, stop)
            with dout.collective:
                dout[a:b] = np.clip(din[a:b], 0.0, None)


def serial(src: str, dst: str) -> None:
    with h5py.File(src, "r") as fin, h5py.File(dst, "w") as fout:
        din = fin["field"]
        dout = fout.create_dataset("field", din.shape, din.dtype)
        for a in range(0, din.shape[0], BLOCK_ROWS):
            dout[a : a + BLOCK_ROWS] = np.clip(din[a : a + BLOCK_ROWS], 0.0, None)


def timed(comm: MPI.Comm, func) -> float:
    if comm.rank == 0:
        os.sync()  # flush the previous variant's dirty pages outside the timing
    comm.Barrier()
    t0 = time.perf_counter()
    func()
    comm.Barrier()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    folder = comm.bcast(
        tempfile.mkdtemp(prefix="h5par-bench-", dir=args.dir) if comm.rank == 0 else None
    )
    src = os.path.join(folder, "in.h5")
    if comm.rank == 0:
        make_input(src, args.gib)
    comm.Barrier()
    times: dict[str, list[float]] = {"h5par": [], "h5py+mpio": [], "serial h5py": []}
    for r in range(args.rounds):
        out = {name: os.path.join(folder, f"{i}-{r}.h5") for i, name in enumerate(times)}
        runs = {
            "h5par": lambda: h5par.apply(
                src, out["h5par"], [{"name": "clip", "min": 0.0}], comm=comm
            ),
            "h5py+mpio": lambda: hand_written(src, out["h5py+mpio"], comm),
            "serial h5py": lambda: serial(src, out["serial h5py"]) if comm.rank == 0 else None,
        }
        order = list(runs)[r % 3 :] + list(runs)[: r % 3]  # rotate: no variant always goes first
        for name in order:
            times[name].append(timed(comm, runs[name]))
        if comm.rank == 0:
            for path in out.values():
                os.remove(path)
    if comm.rank == 0:
        nbytes = os.path.getsize(src)
        base = statistics.median(times["serial h5py"])
        print(
            f"clip min=0 of {nbytes / 2**30:.2f} GiB float64, {comm.size} rank(s), {args.rounds} interleaved rounds"
        )
        for name, values in times.items():
            med = statistics.median(values)
            print(
                f"  {name:<12} median {med:6.2f} s  {2 * nbytes / med / 1e9:5.2f} GB/s moved  "
                f"speed-up vs serial {base / med:4.2f}x  runs: {', '.join(f'{v:.2f}' for v in values)}"
            )
        os.remove(src)
        os.rmdir(folder)


if __name__ == "__main__":
    main()
