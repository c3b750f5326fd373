"""The book's userblock: free bytes at the start of an HDF5 file, kept by h5par in its output.

Run with (optional arguments: a folder for the files, a size)::

    mpirun -n 4 python -m mpi4py examples/userblock.py

Every rank creates the file together (``h5par.File`` with ``userblock_size=512``) and writes
its rows; rank 0 then writes a text header into the userblock with plain ``open`` (HDF5 never
reads those bytes). h5par scales the data on every rank. Checked: the output's userblock has
the same size and bytes, h5py still opens it, data bitwise equal to numpy's ``x * 0.5``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

import h5par
from h5par.core.decomposition import slab

HEADER = b"# experiment 42: raw detector counts, see README for the format\n"


def main(folder: str | None = None, n: int = 1000) -> int:
    """Write a file with a userblock, process it with h5par, check userblock and data."""
    comm = MPI.COMM_WORLD
    tmp = Path(folder or comm.bcast(tempfile.mkdtemp(prefix="h5par-") if comm.rank == 0 else None))
    src, out = tmp / "userblock.h5", tmp / "userblock_scaled.h5"
    data = np.random.default_rng(7).normal(size=(n, 16))
    with h5par.File(src, "w", userblock_size=512) as f:  # collective create, 512 bytes free
        mine = slab(data.shape, comm.rank, comm.size)
        f.create_dataset("counts", data.shape, "f8")[mine] = data[mine]
        checks = {"userblock_size in h5py": f.userblock_size == 512}
    if comm.rank == 0:
        with open(src, "r+b") as raw:  # the book: HDF5 leaves the userblock to us
            raw.write(HEADER.ljust(512, b"\0"))
    comm.Barrier()
    result = h5par.apply(src, out, [{"name": "scale", "factor": 0.5}], overwrite=True)
    if comm.rank == 0:
        with h5py.File(result.output, "r") as f:
            checks["output userblock_size"] = f.userblock_size == 512
            checks["data"] = f["counts"][...].tobytes() == (data * 0.5).tobytes()
        with open(out, "rb") as raw:
            checks["userblock bytes"] = raw.read(512) == HEADER.ljust(512, b"\0")
        print("userblock of the output starts with:", HEADER.decode().strip())
    bad = comm.bcast([k for k, ok in checks.items() if not ok] if comm.rank == 0 else None)
    if comm.rank == 0:
        print(f"userblock: {f'MISMATCH in {bad}' if bad else 'OK'} on {comm.size} rank(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None, *map(int, sys.argv[2:3])))
