"""The book's broadcasting assignment ``dset[:,:] = dset[0,:]`` with h5par's ``broadcast`` kernel.

Run with (optional arguments: a folder for the files, a size)::

    mpirun -n 4 python -m mpi4py examples/broadcast_row.py

Rank 0 writes a (N, 1000) dataset. h5par reads the source row once on rank 0, broadcasts it
to every rank, and each rank fills its own rows. A second run copies the last column into
every column (``axis=1, index=-1``, i.e. ``dset[:, :] = dset[:, -1:]``). Checked: bitwise
equal to numpy's ``np.broadcast_to`` of the same slice, and to h5py's direct assignment.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

import h5par


def main(folder: str | None = None, n: int = 500) -> int:
    """Broadcast a row and a column with h5par; compare with numpy and h5py."""
    comm = MPI.COMM_WORLD
    tmp = Path(folder or comm.bcast(tempfile.mkdtemp(prefix="h5par-") if comm.rank == 0 else None))
    src, rows, cols = tmp / "grid.h5", tmp / "grid_row0.h5", tmp / "grid_lastcol.h5"
    data = np.random.default_rng(5).normal(size=(n, 1000))
    if comm.rank == 0:
        with h5py.File(src, "w") as f:
            f.create_dataset("data", data=data, chunks=(50, 1000))
    comm.Barrier()
    h5par.apply(src, rows, [{"name": "broadcast", "index": 0, "axis": 0}], overwrite=True)
    h5par.apply(src, cols, [{"name": "broadcast", "index": -1, "axis": 1}], overwrite=True)
    checks: dict[str, bool] = {}
    if comm.rank == 0:
        with h5py.File(rows, "r") as f, h5py.File(cols, "r") as g:
            by_row, by_col = f["data"][...], g["data"][...]
            checks["chunks kept"] = f["data"].chunks == (50, 1000)
        checks["row 0"] = by_row.tobytes() == np.broadcast_to(data[0, :], data.shape).tobytes()
        checks["last column"] = (
            by_col.tobytes() == np.broadcast_to(data[:, -1:], data.shape).tobytes()
        )
        book = tmp / "grid_book.h5"  # the book's assignment on one process, with h5py
        with h5py.File(book, "w") as f:
            dset = f.create_dataset("data", data=data)
            dset[:, :] = dset[0, :]
            checks["same as h5py's dset[:,:] = dset[0,:]"] = dset[...].tobytes() == by_row.tobytes()
    bad = comm.bcast([k for k, ok in checks.items() if not ok] if comm.rank == 0 else None)
    if comm.rank == 0:
        print(f"broadcast_row: {f'MISMATCH in {bad}' if bad else 'OK'} on {comm.size} rank(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None, *map(int, sys.argv[2:3])))
