"""h5par.hdf5.io under mpirun (1-4 ranks): reads into a caller's buffer, the transfer modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from h5py import h5fd
from mpi4py import MPI

import h5par
from h5par.hdf5.io import read_block, read_selected, transfer_plist

pytestmark = pytest.mark.mpi(min_size=1)

comm = MPI.COMM_WORLD
DATA = np.arange(40 * 6, dtype=np.float32).reshape(40, 6)


@pytest.fixture
def path(tmp_path_factory) -> Path:
    """An mpio file every rank sees: /plain (contiguous, DATA) and /packed (gzip, empty)."""
    name = str(tmp_path_factory.mktemp("io") / "a.h5") if comm.rank == 0 else None
    path = Path(comm.bcast(name))
    with h5par.File(path, "w", comm, driver="mpio") as f:
        f.create_dataset("plain", data=DATA)  # collective: the same data on every rank
        f.create_dataset("packed", DATA.shape, DATA.dtype, chunks=(8, 6), compression="gzip")
    return path


def test_read_block_fills_and_returns_the_given_buffer(path) -> None:
    rows = (slice(comm.rank, comm.rank + 3), slice(1, 5))
    with h5par.File(path, "r", comm, driver="mpio") as f:
        buffer = np.full(24, -1.0, np.float32)  # a view of the first elements, as Scratch does
        got = read_block(f["plain"], rows, out=buffer[:12].reshape(3, 4))
        assert np.shares_memory(got, buffer) and (buffer[12:] == -1).all()
        assert got.tobytes() == DATA[rows].tobytes()
        slabs = [((comm.rank, 0), (2, 3), (2, 2))]
        got = read_selected(f["plain"], slabs, (2, 3), out=buffer[:6].reshape(2, 3))
        assert np.shares_memory(got, buffer)
        assert got.tobytes() == DATA[comm.rank : comm.rank + 4 : 2, 0:6:2].tobytes()
        assert read_block(f["plain"], None, out=buffer[:0]).shape == (0,)
        for wrong in (np.empty((4, 3), np.float32), np.empty((3, 4)), np.empty((4, 3), "f4").T):
            with pytest.raises(ValueError, match="read buffer"):
                read_block(f["plain"], rows, out=wrong)


def test_writes_are_independent_unless_the_dataset_is_filtered(path) -> None:
    with h5par.File(path, "r+", comm, driver="mpio") as f:
        assert transfer_plist(f["plain"]) is None
        dxpl = transfer_plist(f["packed"])
        assert dxpl is not None and dxpl.get_dxpl_mpio() == h5fd.MPIO_COLLECTIVE
