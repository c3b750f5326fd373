"""The book's "clip negative values to 0": its row loop against h5par's ``clip`` kernel.

Run with (optional arguments: a folder for the files, a size)::

    mpirun -n 4 python -m mpi4py examples/clip_negatives.py

Rank 0 writes a (N, 500) float64 dataset with negative values and two copies of the file.
The book's loop (``val = dset[ix,:]; val[val<0] = 0; dset[ix,:] = val``) runs on the first
copy, every rank over the rows of its own slab; ``h5par.apply(..., in_place=True)`` clips the
second. Checked: both bitwise equal to numpy on the whole array and to each other; both timed.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

import h5par
from h5par.core.decomposition import slab


def book_loop(path: Path, comm: MPI.Comm) -> None:
    """The book's row loop, each rank over its own rows (independent I/O). Collective."""
    with h5par.File(path, "r+", comm) as f:
        dset = f["data"]
        rows = slab(dset.shape, comm.rank, comm.size)[0]
        for ix in range(rows.start, rows.stop):
            val = dset[ix, :]
            val[val < 0] = 0
            dset[ix, :] = val


def main(folder: str | None = None, n: int = 1000) -> int:
    """Clip with the book's loop and with h5par; compare both with numpy; print the times."""
    comm = MPI.COMM_WORLD
    tmp = Path(folder or comm.bcast(tempfile.mkdtemp(prefix="h5par-") if comm.rank == 0 else None))
    loop, kernel = tmp / "clip_loop.h5", tmp / "clip_h5par.h5"
    data = np.random.default_rng(1).normal(size=(n, 500))
    if comm.rank == 0:
        with h5py.File(loop, "w") as f:
            f["data"] = data
        shutil.copyfile(loop, kernel)
    comm.Barrier()
    start = MPI.Wtime()
    book_loop(loop, comm)
    comm.Barrier()
    middle = MPI.Wtime()
    h5par.apply(kernel, kernels=[{"name": "clip", "min": 0.0}], in_place=True)  # ends in sync
    seconds = {"book's row loop": middle - start, "h5par clip": MPI.Wtime() - middle}
    checks: dict[str, bool] = {}
    if comm.rank == 0:
        expected = data.copy()
        expected[data < 0] = 0
        with h5py.File(loop, "r") as f, h5py.File(kernel, "r") as g:
            by_loop, by_h5par = f["data"][...], g["data"][...]
        checks["loop == numpy"] = by_loop.tobytes() == expected.tobytes()
        checks["h5par == numpy.clip"] = by_h5par.tobytes() == np.clip(data, 0.0, None).tobytes()
        checks["loop == h5par"] = by_loop.tobytes() == by_h5par.tobytes()
        print(", ".join(f"{name}: {s:.3f} s" for name, s in seconds.items()))
    bad = comm.bcast([k for k, ok in checks.items() if not ok] if comm.rank == 0 else None)
    if comm.rank == 0:
        print(f"clip_negatives: {f'MISMATCH in {bad}' if bad else 'OK'} on {comm.size} rank(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None, *map(int, sys.argv[2:3])))
