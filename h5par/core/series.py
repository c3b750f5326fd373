"""Series over many files (pure): their order, and where each file's part of a joined array lies.

A series joins one dataset of every file: ``concat`` along an existing axis (files may
differ in length there), ``stack`` along a new leading axis (one index per file).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
from collections.abc import Sequence
from typing import Any

from h5par.core.decomposition import Index
from h5par.errors import UsageError

__all__ = ["COMBINES", "Joined", "natural_key", "ordered"]

#: What ``input.combine`` may be.
COMBINES = ("concat", "stack")


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders the numbers inside names by value (``snap_2`` before ``snap_10``).

    >>> sorted(["s_10.h5", "s_9.h5", "s_100.h5"], key=natural_key)
    ['s_9.h5', 's_10.h5', 's_100.h5']
    """
    return tuple((0, int(p), p) if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", name))


def ordered(names: Sequence[str], firsts: Sequence[float], what: str) -> list[int]:
    """Indices of ``names`` ordered by the first value of ``what`` in each (``order_by``).

    Equal values are refused naming both files: the order would be a guess.

    >>> ordered(["a", "b", "c"], [3.0, 1.0, 2.0], "/time")
    [1, 2, 0]
    >>> ordered(["a", "b"], [1.0, 1.0], "/time")
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: input.order_by = '/time': 'a' and 'b' both start at 1.0 (valid: a different first value in every file)
    """
    order = sorted(range(len(names)), key=lambda i: firsts[i])
    for i, j in itertools.pairwise(order):
        if firsts[i] == firsts[j]:
            raise UsageError(
                f"input.order_by = {what!r}: {names[i]!r} and {names[j]!r} both start at "
                f"{firsts[i]!r} (valid: a different first value in every file)"
            )
    return order


@dataclasses.dataclass(frozen=True)
class Joined:
    """How one dataset of every file makes one array.

    Attributes
    ----------
    combine : str
        ``"concat"`` or ``"stack"``.
    axis : int
        The axis joined (``stack``: 0, the new one).
    shapes : tuple of tuple of int
        Each file's shape of the dataset, in the series' order.
    """

    combine: str
    axis: int
    shapes: tuple[tuple[int, ...], ...]

    @functools.cached_property
    def starts(self) -> list[int]:
        """Where each file's part begins along :attr:`axis`.

        >>> Joined("concat", 0, ((2, 3), (4, 3))).starts
        [0, 2, 6]
        """
        lengths = [1 if self.combine == "stack" else s[self.axis] for s in self.shapes]
        return [0, *itertools.accumulate(lengths)]

    @functools.cached_property
    def shape(self) -> tuple[int, ...]:
        """The joined array's shape.

        >>> Joined("concat", 1, ((2, 3), (2, 5))).shape, Joined("stack", 0, ((2,), (2,))).shape
        ((2, 8), (2, 2))
        """
        first = self.shapes[0]
        if self.combine == "stack":
            return (len(self.shapes), *first)
        return (*first[: self.axis], self.starts[-1], *first[self.axis + 1 :])

    def part(self, k: int) -> Index:
        """The box of the joined array that file ``k`` fills."""
        start, stop = self.starts[k], self.starts[k + 1]
        box = [slice(0, n) for n in self.shape]
        box[self.axis] = slice(start, stop)
        return tuple(box)
