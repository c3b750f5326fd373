"""Pure index arithmetic for neighbourhood kernels: a block extended by its halo.

A kernel such as ``smooth`` needs, for each element of a block, its neighbours up to a
*halo* along some axes. The block is read extended by the halo, the kernel runs on the
extended block and the block's own part (the *core*) is kept. Halos are read from the
file, not exchanged between ranks: units are independent of the rank count (a run resumes
on any number of ranks) and the extra rows cost little (``benchmarks/halo.py`` measures it).

Along an axis the extension is either *cut* at the dataset's edges (the kernel pads there
itself, as scipy.ndimage's reflect/nearest/constant modes and numpy.gradient's one-sided
differences do) or *periodic* (the halo wraps around to the other end, scipy's ``wrap``).
Either way every neighbour a core element needs is real data, so the kernel's result on
the core equals its result on the whole array bit for bit.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

from h5par.core.decomposition import Index

__all__ = ["Extended", "extend"]

#: Per axis: elements needed before and after each element.
Halo = tuple[tuple[int, int], ...]


@dataclasses.dataclass(frozen=True)
class Extended:
    """A block extended by a halo.

    Attributes
    ----------
    sources : tuple of tuple of int
        Per axis, the dataset index of every position of the extended block, in order.
    core : Index
        Where the block itself lies inside the extended block.
    """

    sources: tuple[tuple[int, ...], ...]
    core: Index

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the extended block."""
        return tuple(len(s) for s in self.sources)

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Shape of the grid :meth:`boxes` read (each source once)."""
        return tuple(len(set(s)) for s in self.sources)

    def runs(self) -> list[list[tuple[int, int]]]:
        """Per axis, the ``(start, stop)`` runs of distinct dataset indices, increasing.

        Reading the product of these runs gives a grid holding every source once.

        >>> extend((slice(0, 2),), (5,), ((1, 1),), periodic=True).runs()
        [[(0, 3), (4, 5)]]
        """
        out = []
        for sources in self.sources:
            runs: list[tuple[int, int]] = []
            for i in sorted(set(sources)):
                if runs and runs[-1][1] == i:
                    runs[-1] = (runs[-1][0], i + 1)
                else:
                    runs.append((i, i + 1))
            out.append(runs)
        return out

    def positions(self) -> list[list[int] | None]:
        """Per axis, where each extended position lies in the grid of :meth:`runs`.

        None where the extended block is the grid itself along that axis (no wrap).

        >>> extend((slice(0, 2),), (5,), ((1, 1),), periodic=True).positions()
        [[3, 0, 1, 2]]
        """
        out: list[list[int] | None] = []
        for sources in self.sources:
            grid = {s: k for k, s in enumerate(sorted(set(sources)))}
            taken = [grid[s] for s in sources]
            out.append(None if taken == list(range(len(sources))) else taken)
        return out

    def boxes(self) -> list[Index]:
        """The grid as boxes (the product of the runs), in C order."""
        return [tuple(slice(a, b) for a, b in combo) for combo in itertools.product(*self.runs())]


def extend(index: Index, shape: Sequence[int], halo: Halo, periodic: bool) -> Extended:
    """Extend block ``index`` of a dataset of ``shape`` by ``halo`` (pure).

    Examples
    --------
    Cut at the dataset's edges:

    >>> e = extend((slice(0, 3), slice(2, 4)), (10, 6), ((2, 2), (0, 0)), periodic=False)
    >>> e.sources, e.core
    (((0, 1, 2, 3, 4), (2, 3)), (slice(0, 3, None), slice(0, 2, None)))

    Periodic, the halo wrapping around:

    >>> e = extend((slice(8, 10),), (10,), ((1, 2),), periodic=True)
    >>> e.sources, e.core
    (((7, 8, 9, 0, 1),), (slice(1, 3, None),))
    """
    sources, core = [], []
    for s, n, (before, after) in zip(index, shape, halo, strict=True):
        if periodic and n > 0:
            sources.append(tuple(i % n for i in range(s.start - before, s.stop + after)))
            core.append(slice(before, before + s.stop - s.start))
        else:
            low, high = max(0, s.start - before), min(n, s.stop + after)
            sources.append(tuple(range(low, high)))
            core.append(slice(s.start - low, s.stop - low))
    return Extended(tuple(sources), tuple(core))
