"""The book's slicing: steps, h5py's clear errors, and per-rank slabs and blocks.

Run with (optional arguments: a folder for the files, a size)::

    mpirun -n 4 python -m mpi4py examples/slicing.py

h5py reads ``dset[4:8:2]`` like numpy, but refuses negative steps ("Step must be >= 1") and
slicing a scalar dataset ("Illegal slicing argument for scalar dataspace"; read it with
``dset[()]``). h5par has no selection kernel yet, so every rank reads its share with the
``h5par.core.decomposition`` helpers: ``slab`` (rows) and ``block`` on a ``process_grid``. Checked:
each rank's pieces, and the pieces gathered on rank 0, bitwise equal to numpy.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

import h5par
from h5par.core.decomposition import block, process_grid, slab


def error(action: Callable[[], object]) -> str:
    """The message h5py raises for ``action()`` ("no error" if none)."""
    try:
        action()
    except (ValueError, TypeError) as exc:
        return str(exc)
    return "no error"


def main(folder: str | None = None, n: int = 60) -> int:
    """Slice with h5py, read per-rank slabs and blocks, compare with numpy."""
    comm = MPI.COMM_WORLD
    tmp = Path(folder or comm.bcast(tempfile.mkdtemp(prefix="h5par-") if comm.rank == 0 else None))
    path, data = tmp / "slicing.h5", np.arange(n * n * 1.0).reshape(n, n)
    if comm.rank == 0:
        with h5py.File(path, "w") as f:
            f["data"], f["scalar"] = data, 42.0
    comm.Barrier()
    with h5par.File(path, "r") as f:  # every rank reads independently
        dset, scalar = f["data"], f["scalar"]
        checks = {"dset[4:8:2]": np.array_equal(dset[4:8:2], data[4:8:2])}
        checks["dset[1::3, ::7]"] = np.array_equal(dset[1::3, ::7], data[1::3, ::7])
        step_error, scalar_error = error(lambda: dset[::-1]), error(lambda: scalar[0])
        checks["negative step"] = step_error == "Step must be >= 1 (got -1)"
        checks["scalar slice"] = scalar_error == "Illegal slicing argument for scalar dataspace"
        checks["scalar read"] = scalar[()] == 42.0
        grid = process_grid(comm.size, data.shape)  # (2, 2) on 4 ranks
        mine = {"slab": slab(data.shape, comm.rank, comm.size)}
        mine["block"] = block(data.shape, comm.rank, grid)
        pieces = {kind: (index, dset[index]) for kind, index in mine.items()}
    checks.update(
        {f"{kind} on rank": np.array_equal(p, data[i]) for kind, (i, p) in pieces.items()}
    )
    everything = comm.gather(pieces)
    if comm.rank == 0:
        print(f"dset[::-1]: {step_error!r}\nscalar[0]: {scalar_error!r}\nprocess grid {grid}")
        for kind in mine:
            whole = np.full_like(data, np.nan)
            for index, piece in (ranks[kind] for ranks in everything or []):
                whole[index] = piece
            checks[f"{kind}s gathered"] = whole.tobytes() == data.tobytes()
    bad = sorted({k for ranks in comm.allgather(checks) for k, ok in ranks.items() if not ok})
    if comm.rank == 0:
        print(f"slicing: {f'MISMATCH in {bad}' if bad else 'OK'} on {comm.size} rank(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None, *map(int, sys.argv[2:3])))
