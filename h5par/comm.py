"""The one thin wrapper over mpi4py: resolving communicators and small collectives.

mpi4py is imported lazily so that ``import h5par`` has no MPI side effects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    from mpi4py import MPI

__all__ = [
    "allgather",
    "bcast",
    "bcast_array",
    "rank",
    "resolve_comm",
    "size",
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
