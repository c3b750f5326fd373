"""Smoke job: every rank writes its slab of one shared file through the mpio driver.

Run with (optional argument: the file to write, default a temporary one)::

    mpirun -n 4 python -m mpi4py examples/parallel_write_read.py

Each rank writes rows of a (1000, 257) float64 dataset collectively, then every rank reads
the whole dataset back and checks it against the values numpy computes on one process.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

from h5par.core.decomposition import slab

SHAPE = (1000, 257)


def expected() -> np.ndarray:
    return np.arange(np.prod(SHAPE), dtype="f8").reshape(SHAPE) * 0.5 - 1000.0


def main(path: str | None = None) -> int:
    """Write the dataset collectively, read it back on every rank, compare with numpy."""
    comm = MPI.COMM_WORLD
    if path is None:
        tmp = comm.bcast(tempfile.mkdtemp(prefix="h5par-smoke-") if comm.rank == 0 else None)
        path = str(Path(tmp) / "smoke.h5")
    mine = slab(SHAPE, comm.rank, comm.size)
    with h5py.File(path, "w", driver="mpio", comm=comm) as f:
        dset = f.create_dataset("data", SHAPE, dtype="f8")
        with dset.collective:
            dset[mine] = expected()[mine]
    with h5py.File(path, "r", driver="mpio", comm=comm) as f:
        ok = bool(np.array_equal(f["data"][...], expected()))
    all_ok = comm.allreduce(ok, op=MPI.LAND)
    if comm.rank == 0:
        print(
            f"parallel write/read on {comm.size} rank(s): {'OK' if all_ok else 'MISMATCH'} ({path})"
        )
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
