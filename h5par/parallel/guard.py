"""Never hang: the watchdog, the patience of agreements, and the stop signals.

- The **watchdog** is a thread on every rank. The rank's code calls :func:`beat` as it
  advances; a rank that makes no progress for ``watchdog`` seconds while *working* (not
  waiting for the others) is blocked — in I/O, in a user kernel, on a dead file system —
  and the watchdog ends the whole job with a message naming that rank.
- **Agreements** wait for the other ranks with a patience (:func:`patience`), then ask the
  ranks not there yet whether they are still working (:func:`others_working`, answered by
  their watchdog threads) and wait on while one is: a healthy rank first gives a stuck
  rank's own watchdog time to speak; a rank that has failed asks after a few seconds,
  because the others may be inside a collective HDF5 call they can never leave.
- **Failure notices**: a rank that failed posts its message to every other rank before it
  waits (:func:`h5par.parallel.agreement.collective_errors`). The job always ends with that message,
  printed by the failed rank: a watchdog that finds its rank stuck reads the notices first
  and releases the failed rank from its wait (it speaks itself only if that rank never
  does), and a rank inside a :func:`collective_call` the failed rank never entered — which
  it can never leave — releases the failed rank at once.
- **SIGTERM / SIGUSR1** (SLURM's time limit, ``scancel``, ``--signal``) only set a flag;
  the data pass stops at the next block boundary, records its progress and exits 75.
"""

from __future__ import annotations

import dataclasses
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

from h5par.parallel.comm import (
    abort,
    answer_pings,
    ask_alive,
    key,
    notices_possible,
    read_notices,
    release,
    release_noticed,
    world,
)

if TYPE_CHECKING:
    from h5par.parallel.comm import Comm

__all__ = [
    "DEFAULT_WATCHDOG",
    "beat",
    "calls",
    "collective_call",
    "give_up",
    "guarded",
    "others_working",
    "patience",
    "stop_signal",
    "stop_signals",
    "waiting",
]

#: Seconds without progress after which a working rank is declared stuck (``run.watchdog``).
DEFAULT_WATCHDOG = 600.0
#: Seconds a failed rank waits for the others before it aborts the job.
FAILED_PATIENCE = 10.0
#: Extra seconds a waiting rank gives a stuck rank's own watchdog to report first.
_GRACE = 5.0


@dataclasses.dataclass
class _State:
    seconds: float | None = None  # None: the watchdog is off
    where: str = ""  # "rank r of n on host"
    phase: str = "starting"
    last: float = dataclasses.field(default_factory=time.monotonic)
    waits: int = 0
    stop: str | None = None  # name of the stop signal received
    thread: threading.Thread | None = None
    calls: dict[int, int] = dataclasses.field(default_factory=dict)  # per communicator key
    inside: tuple[Comm, int] | None = None  # the collective call in progress, its number
    noticed: float | None = None  # when the watchdog first left the word to a failed rank
    released: bool = False  # this rank released a failed rank (once is enough)


_state = _State()
_armed = threading.Lock()  # held while the watchdog thread calls MPI: never after guarded()


def beat(phase: str) -> None:
    """Record progress: this rank is working on ``phase``."""
    _state.phase, _state.last = phase, time.monotonic()


@contextmanager
def waiting() -> Iterator[None]:
    """Mark this rank as waiting for the others (the watchdog does not count it as stuck)."""
    _state.waits += 1
    try:
        yield
    finally:
        _state.waits -= 1
        _state.last = time.monotonic()


def calls(comm: Comm) -> int:
    """How many :func:`collective_call` blocks over ``comm`` this rank has entered."""
    return _state.calls.get(key(comm), 0)


@contextmanager
def collective_call(comm: Comm) -> Iterator[None]:
    """Mark a collective call over ``comm`` (every rank makes the same ones, in order).

    A rank inside one that a failed rank never entered waits for a rank that is not coming:
    its watchdog releases the failed rank (see the module docstring).
    """
    number = calls(comm) + 1
    _state.calls[key(comm)] = number
    _state.inside = (comm, number)
    try:
        yield
    finally:
        _state.inside = None


def patience(failed: bool) -> float | None:
    """Seconds an agreement waits before it asks the ranks not there yet (None: forever).

    Then it waits on as long as one of them is making progress (:func:`others_working`).
    A failed rank asks early, before the watchdog of a rank stuck in a call it left would
    fire; a healthy rank gives a stuck rank's own watchdog time to speak first.
    """
    if _state.seconds is None:
        return None
    if failed:
        return min(_state.seconds / 2, FAILED_PATIENCE)
    return _state.seconds + _GRACE


def others_working(channel: Comm) -> bool:
    """True when a rank of ``channel`` that has not arrived is still making progress.

    Asked by a rank whose agreement has waited its patience: such a rank (working, and
    its last beat is recent by its own watchdog's measure) will arrive; a rank that does
    not answer, or only ranks that wait or are stuck, will not.
    """
    if not notices_possible():
        return False
    answers = ask_alive(channel, _GRACE)
    return answers is not None and any(working for working, *_ in answers)


def _answer() -> None:
    """Answer the other ranks' questions (:func:`others_working`) while the watchdog is armed."""
    with _armed:
        seconds = _state.seconds
        if seconds is None or not notices_possible():
            return
        idle = time.monotonic() - _state.last
        answer_pings((not _state.waits and idle <= seconds, _state.phase, idle))


def give_up(message: str) -> NoReturn:
    """Print one error line and abort every rank of the job (status 1)."""
    print(f"h5par: error: {message}; aborting the job", file=sys.stderr, flush=True)
    time.sleep(1)  # let the launcher forward the line before MPI_Abort kills everyone
    abort(1)


@contextmanager
def guarded(seconds: float | None) -> Iterator[None]:
    """Run with the watchdog armed (``seconds`` None or 0: off). Nests: the outer one rules."""
    if _state.seconds is not None or not seconds:
        yield
        return
    rank, nranks = world()
    _state.seconds, _state.where = seconds, f"rank {rank} of {nranks} on {socket.gethostname()}"
    _state.noticed, _state.released = None, False
    beat("starting")
    if _state.thread is None:
        _state.thread = threading.Thread(target=_watch, name="h5par-watchdog", daemon=True)
        _state.thread.start()
    try:
        yield
    finally:
        with _armed:  # the watchdog thread leaves MPI alone from here on (MPI_Finalize)
            _state.seconds = None


def _watch() -> None:
    while True:
        seconds = _state.seconds
        time.sleep(0.2 if seconds is None else min(1.0, seconds / 10))
        _answer()
        if seconds is None or _state.seconds is None or _state.waits:
            continue
        inside = _state.inside
        if inside is not None and not _state.released:
            _release_if_left(*inside)
        idle = time.monotonic() - _state.last
        if idle > seconds:
            _stuck(seconds, idle)


def _notices(comm: Comm | None = None) -> list[tuple[int, tuple[str, int]]]:
    """Failure notices posted to this rank: (rank, (message, its collective calls))."""
    return read_notices(comm) if notices_possible() else []


def _release_if_left(comm: Comm, number: int) -> None:
    """Release the first failed rank that never entered collective call ``number``."""
    for source, (_, entered) in _notices(comm):
        if entered < number:
            rank = _state.where.partition(" of ")[0]
            release(comm, source, f"{rank} is inside a collective call it left")
            _state.released = True
            return


def _stuck(seconds: float, idle: float) -> None:
    """End the job: this rank made no progress — unless a failed rank is about to."""
    notices = _notices()
    if not notices:
        give_up(
            f"{_state.where} made no progress for {idle:.0f} s ({_state.phase}): blocked in "
            f"I/O, in a kernel or in a collective call another rank never joined "
            f"(run.watchdog = {seconds:g} s)"
        )
    now = time.monotonic()
    if _state.noticed is None:
        _state.noticed = now  # the failed rank ends the job at once, with its message
        if not _state.released:
            release_noticed(f"{_state.where} made no progress for {idle:.0f} s ({_state.phase})")
            _state.released = True
    elif now - _state.noticed > FAILED_PATIENCE + _GRACE:
        give_up(f"{notices[0][1][0]}; that rank did not end the job ({_state.where} did)")


def stop_signal() -> str | None:
    """The name of the stop signal received (SIGTERM, SIGUSR1), or None."""
    return _state.stop


@contextmanager
def stop_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGUSR1 into a request to stop at the next block boundary.

    Main thread only; the previous handlers come back afterwards.
    """

    def request(signum: int, frame: FrameType | None) -> None:
        _state.stop = signal.Signals(signum).name

    names = (signal.SIGTERM, signal.SIGUSR1)
    previous = {s: signal.signal(s, request) for s in names}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _state.stop = None
