"""Runs inside the MPI passes (mpirun -n 2/3/4 pytest --only-mpi)."""

from __future__ import annotations

import socket

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from h5par.errors import CollectiveError, UsageError
from h5par.parallel.agreement import collective_errors

pytestmark = pytest.mark.mpi(min_size=2)


def shared_tmp(tmp_path_factory) -> str:
    comm = MPI.COMM_WORLD
    path = str(tmp_path_factory.mktemp("smoke")) if comm.rank == 0 else None
    return comm.bcast(path)


def test_h5py_is_parallel() -> None:
    assert h5py.get_config().mpi


def test_parallel_write_then_read(tmp_path_factory) -> None:
    comm = MPI.COMM_WORLD
    path = shared_tmp(tmp_path_factory) + "/smoke.h5"
    with h5py.File(path, "w", driver="mpio", comm=comm) as f:
        dset = f.create_dataset("x", (comm.size, 5), dtype="i8")
        with dset.collective:
            dset[comm.rank] = np.full(5, comm.rank)
    with h5py.File(path, "r", driver="mpio", comm=comm) as f:
        np.testing.assert_array_equal(f["x"][:, 0], np.arange(comm.size))


def test_an_error_on_one_rank_reaches_every_rank() -> None:
    comm = MPI.COMM_WORLD
    with pytest.raises(CollectiveError) as info, collective_errors(comm, "kernel"):
        if comm.rank == comm.size - 1:
            raise UsageError("bad value 7 (valid: 1..3)")
    err = info.value
    assert err.rank == comm.size - 1
    assert err.exit_status == 2
    assert str(err).startswith("bad value 7 (valid: 1..3) [kernel, rank")
    assert socket.gethostname() in str(err)


def test_no_error_means_no_raise() -> None:
    with collective_errors(MPI.COMM_WORLD, "open"):
        pass
