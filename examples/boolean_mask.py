"""The book's mask assignment ``dset[data<0] = -1*data[data<0]`` and coordinate lists.

Run with (optional arguments: a folder for the files, a size)::

    mpirun -n 4 python -m mpi4py examples/boolean_mask.py

h5par's ``where`` kernel takes the mask and the new value as expressions in ``x`` (parsed
with a whitelist, never ``eval``): ``condition = "x < 0"``, ``value = "-1 * x"``. Rank 0 also
runs the book's assignment with h5py on a copy. Coordinate lists (``dset[[1, 2, 7]]``) are
read with h5py, which wants them in increasing order. Checked: bitwise equal to numpy's
masked assignment, to h5py's, and the coordinate reads equal numpy's fancy indexing.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

import h5par


def main(folder: str | None = None, n: int = 10000) -> int:
    """Mask-assign with h5par and with h5py, read coordinate lists, compare with numpy."""
    comm = MPI.COMM_WORLD
    tmp = Path(folder or comm.bcast(tempfile.mkdtemp(prefix="h5par-") if comm.rank == 0 else None))
    src, out, book = tmp / "range.h5", tmp / "range_masked.h5", tmp / "range_book.h5"
    data = np.random.default_rng(2).random(n) * 2 - 1  # the book's np.random.random(10)*2 - 1
    if comm.rank == 0:
        for path in (src, book):
            with h5py.File(path, "w") as f:
                f["range"] = data
    comm.Barrier()
    kernel = {"name": "where", "condition": "x < 0", "value": "-1 * x"}
    h5par.apply(src, out, [kernel], overwrite=True)
    checks: dict[str, bool] = {}
    if comm.rank == 0:
        expected = data.copy()
        expected[data < 0] = -1 * data[data < 0]
        with h5py.File(book, "r+") as f:
            dset = f["range"]
            dset[data < 0] = -1 * data[data < 0]  # the book, on one process
            by_h5py = dset[...]
        with h5py.File(out, "r") as f:
            dset = f["range"]
            checks["h5par == numpy"] = dset[...].tobytes() == expected.tobytes()
            checks["h5par == h5py"] = dset[...].tobytes() == by_h5py.tobytes()
            checks["dset[[1, 2, 7]]"] = np.array_equal(dset[[1, 2, 7]], expected[[1, 2, 7]])
            try:
                dset[[7, 1]]
                order = "no error"
            except TypeError as exc:
                order = str(exc)
            checks["decreasing list refused"] = (
                order == "Indexing elements must be in increasing order"
            )
            print(f"dset[[1, 2, 7]] = {dset[[1, 2, 7]]}; dset[[7, 1]]: {order}")
    bad = comm.bcast([k for k, ok in checks.items() if not ok] if comm.rank == 0 else None)
    if comm.rank == 0:
        print(f"boolean_mask: {f'MISMATCH in {bad}' if bad else 'OK'} on {comm.size} rank(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None, *map(int, sys.argv[2:3])))
