"""Units of work in pure terms: a dataset to process (a target), its boxes, each rank's share.

A *unit* is a global block of a dataset (an output block for reductions along axes); which
units a dataset has is planned by :mod:`h5par.engine.plan`. Everything here is arithmetic
on boxes and unit numbers, the same on every rank and independent of the number of ranks.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from h5par.core.broadcast import source_box
from h5par.core.decomposition import Index, flat_range, flat_range_boxes, index_shape, split_extent
from h5par.core.slicing import Selection

__all__ = [
    "Source",
    "Target",
    "assign",
    "describe",
    "input_box",
    "merged",
    "nbytes",
    "output_boxes",
    "owned",
    "read_bytes",
    "reduced_size",
    "region",
]


@dataclasses.dataclass(frozen=True)
class Source:
    """An input of a derived dataset: the dataset bound to ``name`` in its formula."""

    name: str
    file: str | None  # None: the job's input file
    path: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    fill: Any = None  # its _FillValue when missing values are respected


@dataclasses.dataclass(frozen=True)
class Target:
    """One dataset to process (picklable: broadcast from rank 0).

    A derived dataset (``sources`` given) is computed from its sources by ``formula``;
    ``shape`` and ``dtype`` are then the formula's result, before the kernels.
    """

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    out_shape: tuple[int, ...]
    out_dtype: np.dtype[Any]
    align: tuple[int, ...] | None
    create: dict[str, Any]
    fill: Any = None  # the _FillValue attribute when missing values are respected
    out_fill: Any = None  # that value converted to out_dtype (written as the output's _FillValue)
    copy: bool = False  # an untouched dataset copied in parallel (no kernels)
    select: Selection | None = None  # what is read of the dataset (shape: its result)
    axes: tuple[int, ...] = ()  # axes a closing ``reduce`` removes (units: output blocks)
    virtual: bool = False  # a virtual dataset of the input (read without mpio)
    stored: tuple[int, ...] | None = None  # the input's chunks when filtered (read whole)
    direct: bool = False  # unfiltered input chunks: read without HDF5's chunk cache
    sources: tuple[Source, ...] = ()  # a derived dataset's inputs
    formula: str | None = None  # ... and how it is computed from them
    like: str | None = None  # the input whose dimension scales a derived dataset takes

    @property
    def derived(self) -> bool:
        """True for a dataset computed from others (not in the input)."""
        return bool(self.sources)

    @property
    def filtered(self) -> bool:
        """True when the output is written through filters (its chunk index changes)."""
        return any(
            k in self.create for k in ("compression", "shuffle", "fletcher32", "scaleoffset")
        )


def reduced_size(target: Target) -> int:
    """Elements one output element of a reduction along axes gathers (1 otherwise)."""
    return math.prod(target.shape[a] for a in target.axes)


def input_box(target: Target, block: Index, piece: Index) -> Index:
    """The input box of output block ``block`` and reduced-axes ``piece``.

    >>> t = Target("/x", (6, 4, 3), np.dtype("f8"), (4,), np.dtype("f8"), None, {}, axes=(0, 2))
    >>> input_box(t, (slice(1, 3),), (slice(0, 6), slice(0, 3)))
    (slice(0, 6, None), slice(1, 3, None), slice(0, 3, None))
    """
    kept, reduced = iter(block), iter(piece)
    return tuple(
        next(reduced) if a in target.axes else next(kept) for a in range(len(target.shape))
    )


def read_bytes(target: Target, index: Index) -> int:
    """Input bytes behind unit ``index`` (an output block for reductions along axes)."""
    if target.sources:
        return sum(nbytes(source_box(index, s.shape), s.dtype) for s in target.sources)
    return nbytes(index, target.dtype) * reduced_size(target)


def nbytes(index: Index, dtype: np.dtype[Any]) -> int:
    """Bytes of ``dtype`` elements in ``index``."""
    return math.prod(index_shape(index)) * dtype.itemsize


def output_boxes(target: Target, index: Index | None) -> list[Index]:
    """Where the block read at ``index`` goes in the output (boxes, for reshapes)."""
    if index is None or 0 in index_shape(index):
        return []
    if target.out_shape == target.shape or target.axes:
        return [index]
    start, stop = flat_range(index, target.shape)
    return flat_range_boxes(start, stop, target.out_shape)


def assign(todo: Sequence[int], nranks: int) -> list[list[int]]:
    """Split the units still to do into contiguous runs, one per rank (pure).

    >>> assign([0, 1, 2, 5, 6], 2)
    [[0, 1, 2], [5, 6]]
    >>> assign([3], 3)
    [[3], [], []]
    """
    return [list(todo[slice(*split_extent(len(todo), nranks, r))]) for r in range(nranks)]


def owned(todo: Sequence[int], count: int, nparts: int) -> list[list[int]]:
    """Per part (rank), the units still to do that it owns (pure).

    Units belong to the part a fresh run on ``nparts`` ranks gives them, whatever is done.

    >>> owned([1, 2, 5], count=6, nparts=2)
    [[1, 2], [5]]
    """
    left = set(todo)
    return [[u for u in mine if u in left] for mine in assign(range(count), nparts)]


def merged(boxes: Iterable[Index]) -> list[Index]:
    """Consecutive boxes joined where they continue each other along one axis (pure).

    >>> merged([(slice(0, 2), slice(0, 4)), (slice(2, 5), slice(0, 4)), (slice(6, 7), slice(0, 4))])
    [(slice(0, 5, None), slice(0, 4, None)), (slice(6, 7, None), slice(0, 4, None))]
    """
    out: list[Index] = []
    for box in boxes:
        last = out[-1] if out else None
        differ = (
            []
            if last is None
            else [a for a, (p, q) in enumerate(zip(last, box, strict=True)) if p != q]
        )
        if last is not None and len(differ) == 1 and last[differ[0]].stop == box[differ[0]].start:
            axis = differ[0]
            joined = slice(last[axis].start, box[axis].stop)
            out[-1] = (*last[:axis], joined, *last[axis + 1 :])
        else:
            out.append(box)
    return out


def region(blocks: Sequence[Index]) -> Index | None:
    """The bounding box of ``blocks`` (None when there are none)."""
    if not blocks:
        return None
    return tuple(
        slice(min(b[axis].start for b in blocks), max(b[axis].stop for b in blocks))
        for axis in range(len(blocks[0]))
    )


def describe(r: int, blocks: Sequence[Index], nbytes: int) -> dict[str, Any]:
    """The ``{"rank", "region", "steps", "bytes"}`` record of a rank's share."""
    box = region(blocks)
    bounds = None if box is None else [[s.start, s.stop] for s in box]
    return {"rank": r, "region": bounds, "steps": len(blocks), "bytes": nbytes}
