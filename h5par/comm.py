"""The one thin wrapper over mpi4py: resolving communicators and small collectives.

mpi4py is imported lazily so that ``import h5par`` has no MPI side effects.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import numpy as np

if TYPE_CHECKING:
    from mpi4py import MPI

__all__ = [
    "abort",
    "allgather",
    "allgather_within",
    "bcast",
    "bcast_array",
    "key",
    "notices_possible",
    "post_notice",
    "private",
    "rank",
    "read_notices",
    "release",
    "released",
    "resolve_comm",
    "settle_notices",
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


def key(comm: MPI.Comm) -> int:
    """A number naming ``comm`` (and its private duplicate) in this process."""
    return int(comm.py2f())


def private(comm: MPI.Comm) -> MPI.Comm:
    """A duplicate of ``comm`` kept for h5par's agreements. Collective the first time.

    HDF5 runs its own collective calls on (a duplicate of) the file's communicator. When a
    rank fails and goes to agree while the others are still inside such a call, the two
    must not be able to match each other: agreements use this separate communicator.
    Entry points create it before any file is opened.
    """
    number = key(comm)
    if number not in _PRIVATE:
        _PRIVATE[number] = comm.Dup()
    return _PRIVATE[number]


def allgather_within(
    comm: MPI.Comm,
    value: T,
    patience: float | None,
    until: Callable[[], bool] | None = None,
) -> list[T] | None:
    """:func:`allgather`, or None when some rank has not arrived after ``patience`` seconds.

    Collective over comm. The ranks first meet in a non-blocking barrier polled until the
    deadline, so a rank that never comes (blocked, dead, stuck in another collective call)
    cannot keep this one waiting forever. ``patience=None`` waits as long as it takes;
    ``until`` (polled with the barrier) ends the wait early when it returns True.
    """
    if patience is not None:
        request = comm.Ibarrier()
        deadline = time.monotonic() + patience
        while not request.Test():
            if time.monotonic() > deadline or (until is not None and until()):
                return None  # the caller aborts the job: the request dies with it
            time.sleep(_POLL)
    return allgather(comm, value)


# Failure notices. A rank that failed tells every other rank so before it waits in an
# agreement, and a rank stuck inside a collective call the failed rank left tells it back
# (a release). Both are point-to-point messages on the private communicators, where
# nothing else is point-to-point (agreements are collective operations, which never match
# point-to-point messages): nothing but these functions can receive them. Notices are read
# by the watchdog thread as well as the main thread, hence MPI_THREAD_MULTIPLE and a lock.

_NOTICE = 1  # tag of a notice: any picklable value from the failed rank
_RELEASE = 2  # tag of a release: an empty message to the failed rank
_LOCK = threading.Lock()
_RECEIVED: dict[tuple[int, int], Any] = {}  # (communicator key, source) -> notice
_RELEASES: list[MPI.Request] = []  # never completed: the job is aborted right after


def notices_possible() -> bool:
    """True when MPI lets threads other than the main one call it (MPI_THREAD_MULTIPLE)."""
    from mpi4py import MPI

    if not MPI.Is_initialized() or MPI.Is_finalized():
        return False
    return bool(MPI.Query_thread() == MPI.THREAD_MULTIPLE)


def post_notice(channel: MPI.Comm, notice: Any) -> list[MPI.Request]:
    """Send ``notice`` to every other rank of ``channel`` (a :func:`private` communicator).

    Non-blocking: complete the requests with :func:`settle_notices` once the ranks agreed.
    """
    me = channel.Get_rank()
    others = (r for r in range(channel.Get_size()) if r != me)
    return [channel.isend(notice, dest=r, tag=_NOTICE) for r in others]


def settle_notices(channel: MPI.Comm, sent: list[MPI.Request], sources: list[int]) -> None:
    """After an agreement: take the notices ``sources`` sent, and complete the ones sent.

    Every rank that posted a notice to the others takes part in the agreement, so the
    messages are on their way: nothing stays pending (MPI_Finalize would wait for it).
    """
    from mpi4py import MPI

    number = key(channel)
    with _LOCK:
        for source in sources:
            if _RECEIVED.pop((number, source), None) is None:
                channel.recv(source=source, tag=_NOTICE)
    MPI.Request.waitall(sent)


def read_notices(comm: MPI.Comm | None = None) -> list[tuple[int, Any]]:
    """The notices received on ``comm``'s private communicator (None: on all of them).

    Pairs (source rank, notice) sorted by rank. Safe from the watchdog thread (never creates
    a communicator); the notices stay readable until :func:`settle_notices` takes them.
    """
    from mpi4py import MPI

    if comm is None:
        channels = list(_PRIVATE.values())
    else:
        channels = [c for c in (_PRIVATE.get(key(comm)),) if c is not None]
    numbers = {key(c) for c in channels}
    status = MPI.Status()
    with _LOCK:
        for channel in channels:
            while (message := channel.improbe(tag=_NOTICE, status=status)) is not None:
                _RECEIVED[key(channel), status.Get_source()] = message.recv()
        found = [(s, notice) for (n, s), notice in _RECEIVED.items() if n in numbers]
    return sorted(found, key=lambda pair: pair[0])


def release(comm: MPI.Comm, dest: int) -> None:
    """Tell rank ``dest``, which failed, that this rank is inside a collective call it left."""
    channel = _PRIVATE.get(key(comm))
    if channel is not None:
        _RELEASES.append(channel.isend(None, dest=dest, tag=_RELEASE))


def released(channel: MPI.Comm) -> int | None:
    """The rank that sent this rank a release on ``channel``, if any (see :func:`release`)."""
    from mpi4py import MPI

    status = MPI.Status()
    if channel.iprobe(tag=_RELEASE, status=status):
        return int(status.Get_source())
    return None


def abort(status: int) -> NoReturn:
    """End every process of the job at once (``MPI_Abort`` on COMM_WORLD): the last resort."""
    from mpi4py import MPI

    MPI.COMM_WORLD.Abort(status)
    os._exit(status)  # pragma: no cover  (Abort does not return)
