"""Halos for neighbourhood kernels: read them from the file, or exchange them between ranks?

Each rank walks its share of a (rows, width) float64 dataset in steps of ``--step-rows`` rows.
A kernel with a halo of ``h`` rows needs, for every step, ``h`` rows before and after it:

- ``file``: each step reads its rows extended by the halo (what h5par does);
- ``exchange``: each step reads its own rows only; the halo rows come from the previous and
  next steps of the same rank (copied from memory) or, at the ends of a rank's share, from
  the neighbouring ranks (``MPI.Sendrecv`` of rows each rank reads once up front): the
  cheapest form of an exchange in a sweep that holds one step in memory;
- ``none``: each step reads its own rows, no halo (the floor).

Methods run interleaved (``--rounds`` rounds, order rotated), each timed as the slowest
rank's wall time of the whole sweep, after a barrier. Run it under mpirun::

    mpirun -n 2 python -m mpi4py benchmarks/halo.py --rows 65536 --width 2048

It prints the median seconds per method and halo width, and the cost of the halo over
``none``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI


def sweep(dset: h5py.Dataset, method: str, halo: int, step: int, comm: MPI.Comm) -> float:
    """One sweep over this rank's rows; returns the slowest rank's seconds."""
    rows, width = dset.shape
    share = -(-rows // comm.size)
    start, stop = comm.rank * share, min(rows, (comm.rank + 1) * share)
    extended = np.empty((step + 2 * halo, width))
    comm.Barrier()
    tick = time.perf_counter()
    if method == "exchange":
        top, bottom = _boundaries(dset, start, stop, halo, comm)
        tail, ahead = np.empty((halo, width)), np.empty((halo, width))
    for a in range(start, stop, step):
        b = min(stop, a + step)
        if method == "file":
            lo, hi = max(0, a - halo), min(rows, b + halo)
            dset.read_direct(extended, np.s_[lo:hi], np.s_[: hi - lo])
            continue
        dset.read_direct(extended, np.s_[a:b], np.s_[halo : halo + b - a])
        if method == "exchange" and halo:
            n = b - a
            extended[:halo] = top if a == start else tail  # the previous step's last rows
            tail[...] = extended[n : n + halo]
            # The next step's first rows: a real sweep reads one step ahead; the copy out of
            # that step's buffer costs what this copy costs.
            extended[n + halo : n + 2 * halo] = bottom if b == stop else ahead
    comm.Barrier()
    return comm.allreduce(time.perf_counter() - tick, op=MPI.MAX)


def _boundaries(
    dset: h5py.Dataset, start: int, stop: int, halo: int, comm: MPI.Comm
) -> tuple[np.ndarray, np.ndarray]:
    """Swap each rank's first and last ``halo`` rows with its neighbours (all at once).

    A streaming rank reads its first rows at its first step and its last rows at its last
    step, when the neighbours need them at the other end of their sweeps; so the boundary
    rows are read up front, once per rank, and swapped.
    """
    width = dset.shape[1]
    mine = np.empty((2, halo, width))
    dset.read_direct(mine[0], np.s_[start : start + halo])
    dset.read_direct(mine[1], np.s_[max(start, stop - halo) : stop])
    top, bottom = np.zeros((halo, width)), np.zeros((halo, width))
    up = comm.rank - 1 if comm.rank > 0 else MPI.PROC_NULL
    down = comm.rank + 1 if comm.rank + 1 < comm.size else MPI.PROC_NULL
    comm.Sendrecv(mine[0], dest=up, recvbuf=bottom, source=down)
    comm.Sendrecv(mine[1], dest=down, recvbuf=top, source=up)
    return top, bottom


def main() -> None:
    """Write the input, run the methods interleaved, print medians (rank 0)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=65536)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--step-rows", type=int, default=256)
    parser.add_argument("--halos", default="1,4,16,64")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    folder = comm.bcast(tempfile.mkdtemp(prefix="h5par-halo-") if comm.rank == 0 else None)
    path = Path(folder) / "in.h5"
    if comm.rank == 0:
        with h5py.File(path, "w") as f:
            dset = f.create_dataset("x", (args.rows, args.width), "f8")
            for a in range(0, args.rows, 4096):
                dset[a : a + 4096] = np.random.default_rng(a).normal(size=dset[a : a + 4096].shape)
    comm.Barrier()
    halos = [int(h) for h in args.halos.split(",")]
    runs = [("none", 0)] + [(m, h) for h in halos for m in ("file", "exchange")]
    times: dict[tuple[str, int], list[float]] = {r: [] for r in runs}
    with h5py.File(path, "r", driver="mpio", comm=comm) as f:
        dset = f["x"]
        for r in range(args.rounds + 1):
            order = runs[r % len(runs) :] + runs[: r % len(runs)]
            for method, halo in order:
                seconds = sweep(dset, method, halo, args.step_rows, comm)
                if r:  # the first round warms the page cache
                    times[(method, halo)].append(seconds)
    if comm.rank == 0:
        gib = args.rows * args.width * 8 / 2**30
        floor = statistics.median(times[("none", 0)])
        print(
            f"{comm.size} ranks, {gib:.2f} GiB, steps of {args.step_rows} rows, medians of {args.rounds}"
        )
        print(f"none: {floor:.3f} s")
        for halo in halos:
            line = [f"halo {halo:3d}:"]
            for method in ("file", "exchange"):
                t = statistics.median(times[(method, halo)])
                line.append(f"{method} {t:.3f} s (+{100 * (t / floor - 1):.1f} %)")
            print("  ".join(line))
        path.unlink()


if __name__ == "__main__":
    main()
