"""A run's plan: the validated work, the targets found in the input and their units.

A *unit* is a global, chunk-aligned, memory-bounded block of a dataset. Units depend on the
dataset, its chunks, the kernels and the memory budget — never on the number of ranks — so
a run stopped on 4 ranks resumes on 2 from the same journal. Each rank takes a contiguous
run of the units still to do, one per collective step (:mod:`h5par.core.units`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from h5par.core.attributes import Edit
from h5par.core.cache import DEFAULT_SLOTS, ChunkCache, chunk_cache
from h5par.core.decomposition import Index, chunk_steps, index_shape, steps
from h5par.core.dimensions import Dimension
from h5par.core.sizes import format_size
from h5par.core.units import Target, assign, describe, read_bytes, reduced_size
from h5par.errors import UsageError
from h5par.kernels import Chain

__all__ = [
    "STEP_FRACTION",
    "Plan",
    "input_cache",
    "input_region",
    "pieces",
    "share",
    "step_itemsize",
    "unit_note",
    "units",
]

#: A unit holds at most memory / STEP_FRACTION bytes of one array (less for long chains, see
#: :func:`fraction`): input block, kernel results and temporaries share the budget.
STEP_FRACTION = 4
#: Datasets are cut into at least this many units when they are big enough, so that up to
#: that many ranks share one dataset whatever the memory budget.
UNITS_PER_DATASET = 64
#: ... but units are not made smaller than this for it (per-step overhead).
MIN_UNIT_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class Plan:
    """What rank 0 found in the input."""

    targets: list[Target]
    userblock: int
    track_order: bool
    copies: list[Target] = dataclasses.field(default_factory=list)
    source: dict[str, int] = dataclasses.field(default_factory=dict)  # the input's identity
    #: Dimension scales a selection's output needs (:mod:`h5par.core.dimensions`).
    dimensions: list[Dimension] = dataclasses.field(default_factory=list)
    #: The untouched datasets the output keeps (None: all of them; output.unselected).
    keep: list[str] | None = None
    #: Attribute edits, each with the value it writes (:mod:`h5par.hdf5.attributes`).
    attrs: list[tuple[Edit, Any]] = dataclasses.field(default_factory=list)
    #: New datasets computed from others (:mod:`h5par.engine.derived`).
    derived: list[Target] = dataclasses.field(default_factory=list)


def step_itemsize(dtype: np.dtype[Any], out_dtype: np.dtype[Any], chain: Chain) -> int:
    """Bytes one element takes in a step: the wider of input and output, float64 for reductions.

    >>> step_itemsize(np.dtype("f4"), np.dtype("i2"), Chain())
    4
    """
    return max(dtype.itemsize, out_dtype.itemsize, 8 if chain.reducers else 1)


def _itemsize(target: Target, chain: Chain) -> int:
    """Bytes one element of ``target`` takes in a step, a derived dataset's inputs included."""
    own = step_itemsize(target.dtype, target.out_dtype, chain)
    return own + sum(source.dtype.itemsize for source in target.sources)


def fraction(chain: Chain) -> int:
    """How many unit-sized arrays a step of ``chain`` may hold: the budget's divisor.

    The block read, one reused result per kernel (:class:`~h5par.kernels.Scratch`) and
    room for temporaries (masks, a copy on write).

    >>> fraction(Chain()), fraction(Chain.from_specs([{"name": "abs"}] * 5))
    (4, 8)
    """
    return max(STEP_FRACTION, len(chain) + 3)


def units(target: Target, chain: Chain, budget: int) -> list[Index]:
    """The units of ``target``: global blocks, independent of the number of ranks (pure).

    A chunked output's units are boxes of whole chunks (:func:`_bricks`), others runs of
    rows aligned to the input's chunks where there are some.

    >>> t = Target("/x", (100, 4), np.dtype("f8"), (100, 4), np.dtype("f8"), None, {})
    >>> len(units(t, Chain(), budget=4 * 800)), units(t, Chain(), budget=4 * 800)[1]
    (4, (slice(25, 50, None), slice(0, 4, None)))
    >>> chunked = dataclasses.replace(t, align=(30, 2))  # 480-byte chunks > 200-byte share
    >>> units(chunked, Chain(), budget=4 * 200)[:2]
    [(slice(0, 30, None), slice(0, 2, None)), (slice(0, 30, None), slice(2, 4, None))]
    """
    if target.axes:
        return _output_units(target, chain, budget)
    if target.shape == ():
        return [()]
    itemsize = _itemsize(target, chain)
    whole = tuple(slice(0, n) for n in target.shape)
    limit = _unit_bytes(target, chain, budget)
    return _steps(target, whole, itemsize, limit, budget, target.align)


def _unit_bytes(target: Target, chain: Chain, budget: int) -> int:
    """The bytes a unit aims at: its share of the budget, with enough units for 64 ranks."""
    itemsize = _itemsize(target, chain)
    total = math.prod(target.shape) * itemsize
    limit = min(budget // fraction(chain), max(MIN_UNIT_BYTES, -(-total // UNITS_PER_DATASET)))
    return limit // _shrink(target, chain)


def _bricks(target: Target) -> bool:
    """True when units are boxes of whole chunks: a chunked output of the input's shape.

    A reshape's units stay runs contiguous in C order (their output is a flat range); a
    reduction along axes keeps output blocks sized by the budget, aligned to its chunks
    where they fit: its output is small and its input large, so many units (ranks) matter
    more than writing each output chunk once.
    """
    return target.align is not None and target.out_shape == target.shape


def unit_note(target: Target, chain: Chain, budget: int) -> str | None:
    """What ``h5par plan`` says when a chunk alone exceeds a unit's share of the budget."""
    if not _bricks(target) or target.align is None:
        return None
    chunk = math.prod(target.align) * _itemsize(target, chain)
    share = _unit_bytes(target, chain, budget)
    if chunk <= share:
        return None
    return (
        f"one chunk {list(target.align)} ({format_size(chunk)} in a step) exceeds a unit's "
        f"share of memory = {format_size(budget)} ({format_size(share)}): each unit is one "
        "whole chunk, never part of one (raise memory to stay within it)"
    )


def _shrink(target: Target, chain: Chain) -> int:
    """2 when blocks are read with a halo (room for it and the filter's float64 copy), else 1."""
    return 1 if chain.halo(len(target.shape)) is None else 2


def _array_bytes(target: Target, chain: Chain, budget: int) -> int:
    """Bytes one unit-sized array of a step may take (see :func:`fraction`)."""
    return budget // fraction(chain) // _shrink(target, chain)


def _steps(
    target: Target, whole: Index, itemsize: int, limit: int, budget: int, align: Any
) -> list[Index]:
    """``whole`` cut into steps: boxes of whole chunks where ``target`` has them, else runs."""
    try:
        if align is not None and _bricks(target):
            return chunk_steps(whole, itemsize, limit, align)
        return steps(whole, itemsize, limit, align)
    except ValueError as exc:  # steps' own, whole in the text
        raise UsageError(f"memory = {budget} bytes is too small for {target.path}: {exc}") from None


#: Bytes a reduction along axes keeps per output element (count, sums, extremes, result).
ACCUMULATOR_BYTES = 48


def _output_units(target: Target, chain: Chain, budget: int) -> list[Index]:
    """A reduction along axes: blocks of the output, each read whole along the reduced axes.

    No unit splits a reduced axis, so no rank combines with another; units stay many enough
    for every rank (:data:`UNITS_PER_DATASET`) yet large enough in input bytes. From
    filtered input chunks, units are boxes of whole chunks along the kept axes (as few as
    that takes, when their accumulators fit the budget): a unit reading part of a chunk
    would decompress all of it, once per unit. Unfiltered chunks are read in part
    directly (:func:`input_cache`).
    """
    whole = tuple(slice(0, n) for n in target.out_shape)
    if target.out_shape == ():
        return [()]
    per_output = reduced_size(target) * target.dtype.itemsize
    elements = max(
        -(-math.prod(target.out_shape) // UNITS_PER_DATASET),
        -(-MIN_UNIT_BYTES // max(1, per_output)),
    )
    arrays = _array_bytes(target, chain, budget)
    limit = min(arrays, elements * ACCUMULATOR_BYTES)
    if target.stored is not None:
        kept = tuple(c for a, c in enumerate(target.stored) if a not in target.axes)
        brick = math.prod(kept) * ACCUMULATOR_BYTES
        if brick <= arrays:
            return chunk_steps(whole, ACCUMULATOR_BYTES, max(limit, brick), kept)
    return _steps(target, whole, ACCUMULATOR_BYTES, limit, budget, target.align)


def pieces(target: Target, chain: Chain, blocks: Sequence[Index], budget: int) -> list[Index]:
    """Boxes of the reduced axes in which each output block of a reduction reads its input.

    The same for every block, so every rank makes the same number of reads; a piece and
    each kernel's result share the budget as units do (:func:`fraction`).

    >>> t = Target("/x", (6, 4), np.dtype("f8"), (4,), np.dtype("f8"), None, {}, axes=(0,))
    >>> chain = Chain.from_specs([{"name": "reduce", "op": "mean", "axis": 0}])
    >>> pieces(t, chain, [(slice(0, 4),)], budget=4 * 64)
    [(slice(0, 2, None),), (slice(2, 4, None),), (slice(4, 6, None),)]
    """
    largest = max((math.prod(index_shape(b)) for b in blocks), default=1)
    itemsize = largest * max(target.dtype.itemsize, 8)  # pieces are reduced in float64
    reduced = tuple(slice(0, target.shape[a]) for a in target.axes)
    limit = _array_bytes(target, chain, budget)
    return _steps(target, reduced, itemsize, limit, budget, None) or [reduced]


def input_cache(target: Target, chain: Chain, budget: int) -> ChunkCache | None:
    """The chunk cache for reading ``target``'s units from its input's chunks.

    Unfiltered chunks: none (0 bytes), so that HDF5 reads the part of a chunk a unit needs
    straight into it (with its 1 MiB default cache it reads every chunk of up to 1 MiB
    whole, each time a unit reads part of it: a time mean over netCDF record chunks read
    25x the data). Filtered chunks: what the budget leaves beside the steps' arrays, so
    that no input chunk is decompressed twice when units do not follow the input's chunks
    (a rechunking job). Blocks are read as they are, or with the chain's halo (wrapping
    reads aside); a selection or a reduction along axes keeps HDF5's default cache.

    Output chunks ``(64, 128)`` over input chunks ``(1, 16384)`` of float32: each unit of
    64 x 4096 touches 64 input chunks of 64 KiB; a smaller budget holds fewer.

    >>> shape, f4 = (64, 16384), np.dtype("f4")
    >>> t = Target("/x", shape, f4, shape, f4, (64, 128), {}, stored=(1, 16384))
    >>> input_cache(t, Chain(), budget=64 << 20), input_cache(t, Chain(), budget=8 << 20)
    ((4259840, 6521), (4194304, 6421))
    >>> input_cache(dataclasses.replace(t, stored=(64, 128)), Chain(), budget=64 << 20) is None
    True
    >>> input_cache(dataclasses.replace(t, stored=None, direct=True), Chain(), budget=1 << 20)
    (0, 521)
    """
    if target.direct:
        return (0, DEFAULT_SLOTS)
    if target.stored is None or target.select is not None or target.axes:
        return None
    blocks = units(target, chain, budget)
    if len(blocks) < 2:  # one unit (or none: an empty dataset) reads each chunk once
        return None
    halo = chain.halo(len(target.shape))
    widths = ((0, 0),) * len(target.shape) if halo is None else halo[0]
    boxes = [
        tuple(
            slice(max(0, s.start - before), min(n, s.stop + after))
            for s, n, (before, after) in zip(block, target.shape, widths, strict=True)
        )
        for block in blocks
    ]
    itemsize = _itemsize(target, chain)
    used = fraction(chain) * max(math.prod(index_shape(b)) for b in boxes) * itemsize
    return chunk_cache(boxes, target.stored, target.dtype.itemsize, budget - used)


def share(target: Target, chain: Chain, r: int, nranks: int, budget: int) -> dict[str, Any]:
    """What rank ``r`` does for ``target`` in a fresh run: region, steps, bytes read (pure)."""
    every = units(target, chain, budget)
    mine = [every[u] for u in assign(range(len(every)), nranks)[r]]
    return describe(r, mine, sum(read_bytes(target, b) for b in mine))


def input_region(target: Target, region: list[list[int]] | None) -> list[list[int]] | None:
    """The input region behind a share's ``region`` (reduced axes taken whole).

    >>> t = Target("/x", (6, 4), np.dtype("f8"), (4,), np.dtype("f8"), None, {}, axes=(0,))
    >>> input_region(t, [[1, 3]])
    [[0, 6], [1, 3]]
    """
    if region is None or not target.axes:
        return region
    kept = iter(region)
    return [[0, n] if a in target.axes else next(kept) for a, n in enumerate(target.shape)]
