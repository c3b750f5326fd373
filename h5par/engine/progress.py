"""Progress on rank 0: a tqdm bar on a terminal, a line every few seconds in batch logs."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from h5par.core.sizes import format_size

__all__ = ["Progress"]


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
