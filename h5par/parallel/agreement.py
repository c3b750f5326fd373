"""The collective agreement on failure: one error on every rank, never a hang.

An exception on one MPI rank must not leave the others waiting in the next collective call.
Code that may fail on some ranks only runs inside :func:`collective_errors`, which makes
every rank agree on the outcome before anyone enters the next collective operation.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

from h5par.errors import CollectiveError, CollectiveUsageError, H5ParError, UsageError
from h5par.parallel.comm import (
    allgather_within,
    notices_possible,
    post_notice,
    private,
    released,
    settle_notices,
)
from h5par.parallel.faults import inject
from h5par.parallel.guard import (
    beat,
    calls,
    give_up,
    others_working,
    patience,
    stop_signal,
    waiting,
)

if TYPE_CHECKING:
    from mpi4py import MPI

    from h5par.parallel.comm import Comm

__all__ = ["Outcome", "collective_errors"]


def _report(exc: BaseException) -> tuple[str, int]:
    status = getattr(exc, "exit_status", 1)
    text = str(exc) if isinstance(exc, H5ParError) else f"{type(exc).__name__}: {exc}"
    return text, int(status)


@dataclasses.dataclass
class Outcome:
    """What the ranks agreed on besides failure (filled in when the block has run).

    Attributes
    ----------
    stop : str or None
        Name of a stop signal (SIGTERM, SIGUSR1) any rank has received.
    due : bool
        Rank 0's ``due`` argument (one rank's clock decides for all, e.g. checkpoints).
    """

    stop: str | None = None
    due: bool = False


@contextmanager
def collective_errors(
    comm: Comm | None,
    phase: str,
    due: bool = False,
    *,
    fault: str | tuple[str, ...] | None = None,
    poll: Callable[[], None] | None = None,
) -> Iterator[Outcome]:
    """Run a block on every rank, then agree on failure. Collective over ``comm``.

    If the block raises on any rank, every rank raises a :class:`CollectiveError` carrying
    the lowest failing rank's number, host and message (the failing rank chains its own
    exception); a :class:`CollectiveUsageError` when that exception was a usage error. With
    one rank, or ``comm=None``, the exception propagates unchanged. The block itself must
    not call collective operations that a failing rank could skip.

    The agreement waits with a patience (:func:`h5par.parallel.guard.patience`), then on as long as a
    rank not there yet is making progress (:func:`h5par.parallel.guard.others_working`): when a rank
    never arrives — blocked, dead, or left inside a collective HDF5 call by a rank that
    failed — the job is aborted with one message instead of hanging. A failing rank first
    posts its message to the others (a failure notice, see :mod:`h5par.parallel.guard`), so that the
    job ends with it, and ends early when a rank tells it back that it cannot come (it is
    inside a collective call the failing rank left, or stuck).

    Parameters
    ----------
    comm : mpi4py.MPI.Comm or None
        Communicator of the ranks that must agree.
    phase : str
        Name of the phase ("open", "write", ...) used in the message.
    due : bool
        Passed on from rank 0 to every rank as ``Outcome.due``.
    fault : str, tuple of str, or None
        The fault point(s) (:mod:`h5par.parallel.faults`) entered on every rank before the
        block runs, in order; a fault that raises there fails the block (and the block's
        body is skipped) like an exception inside it. None: no fault point, the default,
        since phase names ("writing /x") are not fault points.
    poll : callable, optional
        Called while this rank waits for the others (never a collective call: rank 0
        reads the other ranks' progress messages with it).

    Yields
    ------
    Outcome
        Filled in after the block: a stop signal seen by any rank, rank 0's ``due``.
    """
    outcome = Outcome()
    beat(phase)
    if comm is None or comm.Get_size() == 1:
        _enter(fault)
        yield outcome
        outcome.stop, outcome.due = stop_signal(), due
        return
    failure: Exception | None = None
    try:
        _enter(fault)
        yield outcome
    except Exception as exc:  # a failing fault point skips the block: raised after agreeing
        failure = exc
    mine: Any = (
        None if failure is None else (comm.Get_rank(), socket.gethostname(), *_report(failure))
    )
    wait = patience(failure is not None)
    channel = private(comm)
    sent = _notify(comm, channel, phase, mine, wait)
    until = (lambda: released(channel) is not None) if sent else None
    alive = (lambda: others_working(channel)) if notices_possible() else None
    with waiting():
        gathered = allgather_within(
            channel, (mine, stop_signal(), due, bool(sent)), wait, until, alive, poll
        )
    if gathered is None:
        _abandon(comm, channel, phase, mine, wait)
    noticed = [g[0][0] for g in gathered if g[3] and g[0][0] != comm.Get_rank()]
    settle_notices(channel, sent, noticed)
    outcome.stop = next((g[1] for g in gathered if g[1]), None)
    outcome.due = bool(gathered[0][2])
    reports = [g[0] for g in gathered if g[0] is not None]
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


def _enter(fault: str | tuple[str, ...] | None) -> None:
    """Act out the faults set for the fault point(s) ``fault`` (see :func:`collective_errors`)."""
    for point in (fault,) if isinstance(fault, str) else fault or ():
        inject(point)


def _where(comm: Comm) -> str:
    return f"rank {comm.Get_rank()} of {comm.Get_size()} on {socket.gethostname()}"


def _notify(
    comm: Comm, channel: Comm, phase: str, mine: Any, wait: float | None
) -> list[MPI.Request]:
    """Post this rank's failure to the others' watchdogs (none without failure or watchdog)."""
    if mine is None or wait is None or not notices_possible():
        return []
    return post_notice(channel, (f"{mine[2]} [{phase}, {_where(comm)}]", calls(comm)))


def _abandon(comm: Comm, channel: Comm, phase: str, mine: Any, wait: float | None) -> NoReturn:
    where = _where(comm)
    if mine is None:
        give_up(
            f"{where} waited {wait:.0f} s for the other ranks at {phase}: a rank is blocked or dead"
        )
    blocked = released(channel)
    if blocked is not None:
        give_up(f"{mine[2]} [{phase}, {where}]; {blocked[1]}")
    give_up(
        f"{mine[2]} [{phase}, {where}]; the other ranks did not come within {wait:.0f} s and "
        "are not making progress (inside a collective call it left, or blocked)"
    )
