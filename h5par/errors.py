"""Exceptions and the collective agreement on failure.

An exception on one MPI rank must not leave the others waiting in the next collective call.
Code that may fail on some ranks only runs inside :func:`collective_errors`, which makes
every rank agree on the outcome before anyone enters the next collective operation.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mpi4py import MPI

__all__ = [
    "CollectiveError",
    "CollectiveUsageError",
    "H5ParError",
    "UsageError",
    "collective_errors",
]


class H5ParError(Exception):
    """A failure h5par reports as one clear line (exit status 1)."""

    exit_status = 1


class UsageError(H5ParError, ValueError):
    """A bad argument, job key, kernel parameter or input path (exit status 2).

    Raised before anything is opened for writing.
    """

    exit_status = 2


class CollectiveError(H5ParError):
    """The same failure, raised on every rank after one or more ranks failed.

    Attributes
    ----------
    rank : int
        The lowest failing rank.
    host : str
        Host name of that rank.
    exit_status : int
        Exit status the failing rank's exception asked for.
    """

    def __init__(self, message: str, rank: int, host: str, exit_status: int) -> None:
        super().__init__(message)
        self.rank = rank
        self.host = host
        self.exit_status = exit_status


class CollectiveUsageError(CollectiveError, UsageError):
    """A usage error agreed on by every rank (exit status 2)."""


def _report(exc: BaseException) -> tuple[str, int]:
    status = getattr(exc, "exit_status", 1)
    text = str(exc) if isinstance(exc, H5ParError) else f"{type(exc).__name__}: {exc}"
    return text, int(status)


@contextmanager
def collective_errors(comm: MPI.Comm | None, phase: str) -> Iterator[None]:
    """Run a block on every rank, then agree on failure. Collective over ``comm``.

    If the block raises on any rank, every rank raises a :class:`CollectiveError` carrying
    the lowest failing rank's number, host and message (the failing rank chains its own
    exception); a :class:`CollectiveUsageError` when that exception was a usage error. With one rank, or ``comm=None``, the exception propagates unchanged.
    The block itself must not call collective operations that a failing rank could skip.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm or None
        Communicator of the ranks that must agree.
    phase : str
        Name of the phase ("open", "write", ...) used in the message.
    """
    if comm is None or comm.Get_size() == 1:
        yield
        return
    failure: Exception | None = None
    try:
        yield
    except Exception as exc:
        failure = exc
    mine: Any = (
        None if failure is None else (comm.Get_rank(), socket.gethostname(), *_report(failure))
    )
    reports = [r for r in comm.allgather(mine) if r is not None]
    if not reports:
        return
    rank, host, text, status = reports[0]
    if len(reports) == comm.Get_size() and all(r[2] == text for r in reports):
        message = text  # every rank found the same problem: where does not matter
    else:
        others = f" (and {len(reports) - 1} more rank(s))" if len(reports) > 1 else ""
        message = f"{text} [{phase}, rank {rank} of {comm.Get_size()} on {host}{others}]"
    error = CollectiveUsageError if status == UsageError.exit_status else CollectiveError
    raise error(message, rank, host, status) from failure
