"""Fault injection for tests: fail, die or hang at a chosen point on a chosen rank.

Set ``H5PAR_FAULT`` to one or more comma-separated ``POINT:RANK:ACTION[:NTH]``:

- ``POINT``: one of :data:`POINTS` (``collective-write`` is inside a collective write,
  reached only on writes of filtered datasets under mpio: the other ranks are already in
  HDF5's collective call when it fires; ``write`` is right after every write; ``copy`` at
  every object, and every chunk of a big dataset, rank 0 copies into a new output);
- ``RANK``: a rank of the job's communicator, or ``*`` for every rank;
- ``ACTION``: ``raise`` (an :class:`InjectedFaultError`), ``kill`` (SIGKILL itself), ``block``
  (sleep forever, as a rank stuck in I/O would), ``term`` / ``usr1`` (send itself that
  signal), ``delay=SECONDS`` (slow the step down);
- ``NTH``: fire at the n-th time the point is reached on that rank in a run of
  :func:`h5par.apply` (default 1; ``delay`` fires every time from the n-th on).

Unset, :func:`inject` costs one dictionary lookup. Never set it outside tests.

Examples
--------
>>> parse("write:1:raise:3, read:*:delay=0.5")
[Fault(point='write', rank=1, action='raise', nth=3, seconds=0.0), Fault(point='read', rank=None, action='delay', nth=1, seconds=0.5)]
>>> parse("nowhere:0:raise")
Traceback (most recent call last):
...
ValueError: H5PAR_FAULT point 'nowhere' (valid: validate, inspect, create, open, read, kernel, write, collective-write, checkpoint, finalize, copy)
"""

from __future__ import annotations

import collections
import dataclasses
import os
import signal
import time

__all__ = ["POINTS", "Fault", "InjectedFaultError", "inject", "parse", "reset"]

ENV = "H5PAR_FAULT"
POINTS = (
    "validate",
    "inspect",
    "create",
    "open",
    "read",
    "kernel",
    "write",
    "collective-write",
    "checkpoint",
    "finalize",
    "copy",
)
_ACTIONS = ("raise", "kill", "block", "term", "usr1", "delay")


class InjectedFaultError(RuntimeError):
    """The exception a ``raise`` fault throws."""


@dataclasses.dataclass(frozen=True)
class Fault:
    """One parsed fault: where, on which rank (None: all), what, from which occurrence."""

    point: str
    rank: int | None
    action: str
    nth: int = 1
    seconds: float = 0.0


def parse(text: str) -> list[Fault]:
    """Parse an ``H5PAR_FAULT`` value (see the module docstring)."""
    faults = []
    for spec in filter(None, (s.strip() for s in text.split(","))):
        parts = spec.split(":")
        if len(parts) not in (3, 4):
            raise ValueError(f"H5PAR_FAULT entry {spec!r}: expected POINT:RANK:ACTION[:NTH]")
        point, who, action = parts[:3]
        if point not in POINTS:
            raise ValueError(f"H5PAR_FAULT point {point!r} (valid: {', '.join(POINTS)})")
        name, _, value = action.partition("=")
        if name not in _ACTIONS:
            raise ValueError(f"H5PAR_FAULT action {action!r} (valid: {', '.join(_ACTIONS)})")
        nth = int(parts[3]) if len(parts) == 4 else 1
        seconds = float(value) if name == "delay" else 0.0
        faults.append(Fault(point, None if who == "*" else int(who), name, nth, seconds))
    return faults


_seen: collections.Counter[str] = collections.Counter()


def reset() -> None:
    """Count occurrences from zero again (every run starts counting afresh)."""
    _seen.clear()


def inject(point: str) -> None:
    """Act out the faults set for ``point`` on this rank (nothing when ``H5PAR_FAULT`` is unset).

    Ranks are those of ``COMM_WORLD``, whatever communicator the run uses.
    """
    text = os.environ.get(ENV)
    if not text:
        return
    from h5par.parallel.comm import world

    rank = world()[0]
    _seen[point] += 1
    for fault in parse(text):
        if fault.point != point or fault.rank not in (None, rank):
            continue
        if fault.action == "delay" and _seen[point] >= fault.nth:
            time.sleep(fault.seconds)
        elif _seen[point] == fault.nth:
            _act(fault, rank)


def _act(fault: Fault, rank: int) -> None:
    where = f"{fault.point} on rank {rank}"
    if fault.action == "raise":
        raise InjectedFaultError(f"injected fault at {where}")
    if fault.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if fault.action in ("term", "usr1"):
        os.kill(os.getpid(), signal.SIGTERM if fault.action == "term" else signal.SIGUSR1)
    if fault.action == "block":
        while True:  # a rank stuck in I/O: only the watchdog ends this
            time.sleep(3600)
