"""Sets of unit indices as sorted, disjoint half-open intervals ``[[start, stop], ...]``.

The journal keeps the finished units of a dataset this way: a run that finishes its units
in order keeps one interval however many there are, and adding a step's units costs what
the step holds and the intervals there are, never the units finished before.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

__all__ = ["covers", "intervals", "merge", "size"]

Intervals = list[list[int]]


def intervals(units: Iterable[int]) -> Intervals:
    """The intervals of ``units`` (any order, repeats allowed).

    >>> intervals([5, 0, 1, 2, 7, 6, 1])
    [[0, 3], [5, 8]]
    >>> intervals([])
    []
    """
    out: Intervals = []
    for u in sorted(set(units)):
        if out and out[-1][1] == u:
            out[-1][1] = u + 1
        else:
            out.append([u, u + 1])
    return out


def merge(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]]) -> Intervals:
    """The union of two interval lists, adjacent intervals joined.

    >>> merge([[0, 3], [5, 7]], [[3, 4], [6, 9], [12, 13]])
    [[0, 4], [5, 9], [12, 13]]
    """
    out: Intervals = []
    for start, stop in sorted((span[0], span[1]) for span in [*a, *b]):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], stop)
        else:
            out.append([start, stop])
    return out


def covers(spans: Sequence[Sequence[int]], u: int) -> bool:
    """True when ``u`` lies in one of the sorted, disjoint ``spans``.

    >>> covers([[0, 3], [5, 7]], 2), covers([[0, 3], [5, 7]], 3), covers([], 0)
    (True, False, False)
    """
    i = bisect.bisect_right(spans, u, key=lambda span: span[0]) - 1
    return i >= 0 and spans[i][0] <= u < spans[i][1]


def size(spans: Iterable[Sequence[int]]) -> int:
    """How many units the intervals hold.

    >>> size([[0, 3], [5, 7]])
    5
    """
    return sum(stop - start for start, stop in spans)
