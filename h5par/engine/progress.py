"""Progress on rank 0: a tqdm bar on a terminal, a line every few seconds in batch logs.

Files that ranks process alone (file-level parallelism) are counted too: the other ranks
forward their bytes to rank 0 (:class:`Relay`) in messages it reads when it looks.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO

from h5par.core.sizes import format_size
from h5par.parallel.comm import post_progress, private, rank, settle_progress, size, take_progress

if TYPE_CHECKING:
    from h5par.parallel.comm import Comm

__all__ = ["Progress", "Relay", "interval"]

#: Seconds between log lines in batch logs (``H5PAR_PROGRESS_SECONDS`` overrides it).
LOG_SECONDS = 10.0
#: Seconds between a rank's progress messages to rank 0 ...
RELAY_SECONDS = 1.0
#: ... and more with many ranks: rank 0 reads at most about this many messages a second.
RELAY_RATE = 1000
#: Seconds between rank 0's looks for progress messages.
LOOK_SECONDS = 0.1


def interval() -> float:
    """Seconds between progress log lines: ``H5PAR_PROGRESS_SECONDS``, default 10.

    A value that is not a number of seconds (0 or more) gives the default.
    """
    try:
        seconds = float(os.environ.get("H5PAR_PROGRESS_SECONDS", LOG_SECONDS))
    except ValueError:
        return LOG_SECONDS
    return seconds if seconds >= 0 else LOG_SECONDS


class Progress:
    """Bytes done out of an (approximate) total.

    Parameters
    ----------
    total : int
        Expected bytes (the run uses its inputs' sizes: compressed inputs make it a lower
        bound, so the bar may stop short of 100% or pass it slightly).
    enabled : bool
        False prints nothing (``--quiet``, ranks other than 0).
    stream : file, optional
        Where to write (default ``sys.stderr``).
    interval : float
        Seconds between log lines when ``stream`` is not a terminal.
    """

    def __init__(
        self, total: int, enabled: bool = True, stream: TextIO | None = None, interval: float = 10.0
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.total, self.done = max(total, 1), 0
        self.interval, self.started = interval, time.monotonic()
        self.last = self.started
        self.bar = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm  # only for a bar: its import costs 35 ms at every start

            self.bar = tqdm(
                total=self.total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=self.stream,
                desc="h5par",
                leave=False,
            )

    def update(self, nbytes: int) -> None:
        """Count ``nbytes`` more."""
        self.done += nbytes
        if self.bar is not None:
            self.bar.update(nbytes)
        elif self.enabled and time.monotonic() - self.last >= self.interval:
            self.last = time.monotonic()
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def line(self) -> str:
        """A log line: share done, bytes, rate and ETA."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 and self.done < self.total else 0.0
        share = 100.0 * self.done / self.total
        return (
            f"h5par progress: {share:5.1f}% {format_size(self.done)} of ~{format_size(self.total)}, "
            f"{rate / 1e6:.1f} MB/s, ETA {eta:.0f} s"
        )

    def close(self) -> None:
        """Remove the bar (the run summary follows)."""
        if self.bar is not None:
            self.bar.close()


class Relay:
    """Every rank's progress on rank 0's :class:`Progress`, without a collective call.

    Its :meth:`update` is the runs' progress callback on every rank. On rank 0 it counts
    at once; on the others, only while they process files alone (:meth:`alone`), it adds
    up bytes and sends them to rank 0 every :data:`RELAY_SECONDS` (a non-blocking
    point-to-point message). Rank 0 reads them when it counts its own steps and while it
    waits for the others (:meth:`look`); :meth:`settle`, after the ranks agreed, takes
    the messages still on their way.

    Parameters
    ----------
    progress : Progress
        Rank 0's bar or log (disabled elsewhere).
    comm : mpi4py.MPI.Comm
        The job's ranks.
    """

    def __init__(self, progress: Progress, comm: Comm) -> None:
        self.progress = progress
        self.channel = private(comm)
        self.me, self.nranks = rank(comm), size(comm)
        self.every = max(RELAY_SECONDS, self.nranks / RELAY_RATE)
        self.forwarding, self.pending = False, 0
        self.last = self.looked = time.monotonic()
        self.sent: list[Any] = []  # mpi4py requests
        self.taken: Counter[int] = Counter()  # messages read, by source

    def update(self, nbytes: int) -> None:
        """Count ``nbytes`` more read by this rank (or, on rank 0, by all ranks of a step)."""
        if self.me == 0:
            self.progress.update(nbytes)
            self.look()
        elif self.forwarding:
            self.pending += nbytes
            if time.monotonic() - self.last >= self.every:
                self.flush()

    def flush(self) -> None:
        """Send what this rank has counted since its last message (ranks other than 0)."""
        if self.pending:
            request = post_progress(self.channel, self.pending)
            self.sent += [request] if request is not None else []
            self.pending = 0
        self.last = time.monotonic()

    def look(self) -> None:
        """On rank 0, count the messages that have arrived (at most every LOOK_SECONDS)."""
        if self.me != 0 or self.nranks == 1 or time.monotonic() - self.looked < LOOK_SECONDS:
            return
        self.looked = time.monotonic()
        self._count(take_progress(self.channel))

    @contextlib.contextmanager
    def alone(self) -> Iterator[None]:
        """Forward this rank's progress while it processes files alone; flush at the end."""
        self.forwarding = True
        yield
        self.forwarding = False
        self.flush()

    def settle(self, sent: list[int]) -> None:
        """After the ranks agreed: rank 0 takes what is on its way. Every rank calls it.

        ``sent[r]`` is the number of messages rank ``r`` sent (gathered with the results).
        """
        missing = {r: n - self.taken[r] for r, n in enumerate(sent) if n > self.taken[r]}
        self._count(settle_progress(self.channel, self.sent, missing if self.me == 0 else {}))
        self.sent = []

    def _count(self, messages: list[tuple[int, int]]) -> None:
        for source, nbytes in messages:
            self.taken[source] += 1
            self.progress.update(nbytes)
