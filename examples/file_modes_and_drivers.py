"""The book's file modes (r, r+, w, w-/x, a) and drivers (core, family, mpio) under MPI.

Run with (optional arguments: a folder for the files, a size)::

    mpirun -n 4 python -m mpi4py examples/file_modes_and_drivers.py

``h5par.File`` opens a file on every rank (mpio on several, sec2 on one); each mode's error is
checked (catch ``OSError``: under mpio there are no errno subclasses). ``core`` (in memory,
``backing_store`` decides if it reaches the disk) is single-process: one file per rank.
``family`` files of ``memb_size`` members are read by h5par on every rank into one file.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

import h5par
from h5par.core.decomposition import slab


def raises(error: type[Exception], action: Callable[[], object]) -> bool:
    """True if ``action()`` raises ``error`` (the mode refused, as the book says)."""
    try:
        action()
    except error:
        return True
    return False


def main(folder: str | None = None, n: int = 1000) -> int:
    """Exercise every mode and driver; check data and errors on every rank."""
    comm = MPI.COMM_WORLD
    tmp = Path(folder or comm.bcast(tempfile.mkdtemp(prefix="h5par-") if comm.rank == 0 else None))
    path, missing, data = tmp / "modes.h5", tmp / "missing.h5", np.arange(n * 8.0).reshape(n, 8)
    with h5par.File(path, "w") as f:  # w: create or truncate (collective under mpio)
        mine = slab(data.shape, comm.rank, comm.size)  # this rank's rows
        f.create_dataset("data", data.shape, "f8")[mine] = data[mine]
        checks = {"driver": f.driver == ("mpio" if comm.size > 1 else "sec2")}
    for mode, name in (("w-", path), ("x", path), ("r", missing), ("r+", missing)):
        checks[f"{mode} refused"] = raises(OSError, partial(h5par.File, name, mode))
    with h5par.File(path, "r") as f:
        checks["r reads"] = np.array_equal(f["data"][...], data)
        checks["r refuses writes"] = raises(ValueError, lambda: f.create_dataset("y", (1,), "f8"))
    with h5par.File(path, "a") as f:  # a: read/write, created if missing
        f.attrs["note"] = "appended"  # collective metadata: the same value on every rank
    with h5par.File(path, "r+") as f:  # r+: read/write, must exist
        checks["a and r+"] = f.attrs["note"] == "appended" and np.array_equal(f["data"][...], data)
    for keep in (False, True):  # core: one in-memory file per rank
        mem = tmp / f"core_{keep}_{comm.rank}.h5"
        with h5par.File(mem, "w", MPI.COMM_SELF, "core", backing_store=keep) as f:
            f["x"] = data
        checks[f"core backing_store={keep}"] = mem.exists() == keep
    if comm.size > 1:  # core is single-process: several ranks cannot write through it
        checks["core"] = raises(h5par.UsageError, lambda: h5par.File(tmp / "c", "w", driver="core"))
    if comm.rank == 0:  # family: members of memb_size bytes (the last may be shorter)
        with h5py.File(tmp / "fam_%d.h5", "w", driver="family", memb_size=4096) as f:
            f["data"] = data
    comm.Barrier()
    h5par.apply(tmp / "fam_%d.h5", tmp / "one.h5", driver="family", memb_size=4096, overwrite=True)
    with h5par.File(tmp / "one.h5", "r") as f:  # h5par read the members on every rank
        checks["family members"] = len(list(tmp.glob("fam_*.h5"))) >= data.nbytes // 4096
        checks["family -> one file"] = np.array_equal(f["data"][...], data)
    bad = sorted({k for ranks in comm.allgather(checks) for k, ok in ranks.items() if not ok})
    if comm.rank == 0:
        status = f"MISMATCH in {bad}" if bad else "OK"
        print(f"file_modes_and_drivers: {status} on {comm.size} rank(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None, *map(int, sys.argv[2:3])))
