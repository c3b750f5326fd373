"""The one thin wrapper over mpi4py: resolving communicators and small collectives.

mpi4py is imported lazily so that ``import h5par`` has no MPI side effects.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, NoReturn, TypeVar

import numpy as np

if TYPE_CHECKING:
    from mpi4py import MPI

__all__ = [
    "abort",
    "allgather",
    "allgather_within",
    "bcast",
    "bcast_array",
    "private",
    "rank",
    "resolve_comm",
    "size",
    "world",
]

#: Bytes per broadcast message (MPI counts are C ints; stay far below 2 GiB).
_BCAST_PIECE = 1 << 30

T = TypeVar("T")


def resolve_comm(comm: MPI.Comm | None = None) -> MPI.Comm:
    """Return ``comm``, or ``MPI.COMM_WORLD`` when it is None (initialises MPI)."""
    if comm is not None:
        return comm
    from mpi4py import MPI

    return MPI.COMM_WORLD


def self_comm() -> MPI.Comm:
    """A communicator of this rank alone (for work one rank does by itself)."""
    from mpi4py import MPI

    return MPI.COMM_SELF


def world() -> tuple[int, int]:
    """This process's rank in ``COMM_WORLD`` and its size (the job's ranks)."""
    from mpi4py import MPI

    return int(MPI.COMM_WORLD.Get_rank()), int(MPI.COMM_WORLD.Get_size())


def rank(comm: MPI.Comm) -> int:
    """This process's rank in ``comm``."""
    return int(comm.Get_rank())


def size(comm: MPI.Comm) -> int:
    """Number of ranks in ``comm``."""
    return int(comm.Get_size())


def bcast(comm: MPI.Comm, value: T, root: int = 0) -> T:
    """Broadcast a picklable value from ``root``. Collective over comm."""
    result: T = comm.bcast(value, root=root)
    return result


def bcast_array(comm: MPI.Comm, array: np.ndarray, root: int = 0) -> None:
    """Broadcast a C-contiguous array in place from ``root`` (any dtype). Collective over comm.

    Sent as raw bytes in pieces of at most 1 GiB, so neither the dtype nor the size matters.
    """
    raw = array.reshape(-1).view(np.uint8)
    for start in range(0, raw.size, _BCAST_PIECE):
        comm.Bcast(raw[start : start + _BCAST_PIECE], root=root)


def allgather(comm: MPI.Comm, value: T) -> list[T]:
    """Gather one picklable value from every rank, on every rank. Collective over comm."""
    result: list[T] = comm.allgather(value)
    return result


#: Seconds between polls of a pending agreement (short: steps end in one).
_POLL = 0.0005


_PRIVATE: dict[int, MPI.Comm] = {}


def private(comm: MPI.Comm) -> MPI.Comm:
    """A duplicate of ``comm`` kept for h5par's agreements. Collective the first time.

    HDF5 runs its own collective calls on (a duplicate of) the file's communicator. When a
    rank fails and goes to agree while the others are still inside such a call, the two
    must not be able to match each other: agreements use this separate communicator.
    Entry points create it before any file is opened.
    """
    key = int(comm.py2f())
    if key not in _PRIVATE:
        _PRIVATE[key] = comm.Dup()
    return _PRIVATE[key]


def allgather_within(comm: MPI.Comm, value: T, patience: float | None) -> list[T] | None:
    """:func:`allgather`, or None when some rank has not arrived after ``patience`` seconds.

    Collective over comm. The ranks first meet in a non-blocking barrier polled until the
    deadline, so a rank that never comes (blocked, dead, stuck in another collective call)
    cannot keep this one waiting forever. ``patience=None`` waits as long as it takes.
    """
    if patience is not None:
        request = comm.Ibarrier()
        deadline = time.monotonic() + patience
        while not request.Test():
            if time.monotonic() > deadline:
                return None  # the caller aborts the job: the request dies with it
            time.sleep(_POLL)
    return allgather(comm, value)


def abort(status: int) -> NoReturn:
    """End every process of the job at once (``MPI_Abort`` on COMM_WORLD): the last resort."""
    from mpi4py import MPI

    MPI.COMM_WORLD.Abort(status)
    os._exit(status)  # pragma: no cover  (Abort does not return)
