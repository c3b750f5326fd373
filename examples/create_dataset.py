"""The book's ``create_dataset``: shapes, dtypes and fill values, written collectively.

Run with (optional arguments: a folder for the files, a size)::

    mpirun -n 4 python -m mpi4py examples/create_dataset.py

Every rank makes the same ``create_dataset`` calls (metadata is collective under mpio), then
writes its own rows with ``dset.collective``. Checked on rank 0 with plain h5py: an unwritten
dataset reads zeros, ``fillvalue=42`` reads 42 where nothing was written, float64 written into
a float32 dataset equals numpy's ``astype``; h5par keeps the fill value in its output and
``OutputOptions(fillvalue=...)`` changes it.
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


def main(folder: str | None = None, n: int = 1000) -> int:
    """Create datasets on every rank, write rows collectively, check fill values and dtypes."""
    comm = MPI.COMM_WORLD
    tmp = Path(folder or comm.bcast(tempfile.mkdtemp(prefix="h5par-") if comm.rank == 0 else None))
    src, out = tmp / "created.h5", tmp / "created_copy.h5"
    n = max(n, 2 * comm.size)  # a collective write hangs if a rank selects nothing (h5py#965)
    data = np.random.default_rng(3).normal(size=(n, 8))
    top = slab((n // 2, 8), comm.rank, comm.size)  # the first half of the rows, split over ranks
    with h5par.File(src, "w", driver="mpio") as f:  # mpio even on 1 rank: dset.collective needs it
        f.create_dataset("empty", (n, 8), dtype=np.int32)  # never written: reads 0
        answer = f.create_dataset("fortytwo", (n, 8), dtype="f8", fillvalue=42)
        single = f.create_dataset("single", (n, 8), dtype=np.float32)
        with answer.collective:  # one MPI-IO call for all ranks
            answer[top] = data[top]
        with single.collective:  # float64 data into float32: HDF5 converts on write
            mine = slab(data.shape, comm.rank, comm.size)
            single[mine] = data[mine]
    h5par.apply(src, out, [{"name": "clip", "max": 1.0}], "/fortytwo", overwrite=True)
    options = h5par.OutputOptions(fillvalue=-1.0)
    h5par.apply(src, tmp / "refilled.h5", datasets="/fortytwo", options=options, overwrite=True)
    checks: dict[str, bool] = {}
    if comm.rank == 0:
        with h5py.File(src, "r") as f:
            fortytwo = f["fortytwo"][...]
            checks["zeros"] = not f["empty"][...].any() and f["empty"].dtype == np.int32
            checks["written half"] = np.array_equal(fortytwo[: n // 2], data[: n // 2])
            checks["reads 42"] = (fortytwo[n // 2 :] == 42).all()
            checks["fillvalue"] = f["fortytwo"].fillvalue == 42
            checks["float32"] = f["single"][...].tobytes() == data.astype(np.float32).tobytes()
        with h5py.File(out, "r") as f:
            checks["h5par keeps fillvalue"] = f["fortytwo"].fillvalue == 42
            clipped = np.clip(fortytwo, None, 1.0)
            checks["h5par clip"] = f["fortytwo"][...].tobytes() == clipped.tobytes()
        with h5py.File(tmp / "refilled.h5", "r") as f:
            checks["OutputOptions(fillvalue=-1)"] = f["fortytwo"].fillvalue == -1.0
            checks["copy"] = np.array_equal(f["fortytwo"][...], fortytwo)
    bad = comm.bcast([k for k, ok in checks.items() if not ok] if comm.rank == 0 else None)
    if comm.rank == 0:
        print(f"create_dataset: {f'MISMATCH in {bad}' if bad else 'OK'} on {comm.size} rank(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None, *map(int, sys.argv[2:3])))
