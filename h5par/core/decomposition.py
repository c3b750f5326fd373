"""Pure index arithmetic: which part of a dataset each rank owns and how it walks it.

Nothing here communicates or touches a file: every rank computes every other rank's share
by itself (as HeAT's ``chunk``), so ranks agree on collective call counts without messages.

An *index* is a tuple of ``slice`` objects with explicit, non-negative ``start``/``stop`` and
no step. A *region* is the index of a rank's share; *steps* are the memory-bounded pieces a
rank reads, transforms and writes one at a time.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

__all__ = [
    "MAX_TRANSFER_BYTES",
    "Index",
    "block",
    "chunk_steps",
    "flat_range",
    "flat_range_boxes",
    "index_shape",
    "process_grid",
    "slab",
    "split_extent",
    "spread",
    "steps",
]

Index = tuple[slice, ...]

#: Largest number of bytes one rank moves in one MPI-IO call (MPI counts are C ints).
MAX_TRANSFER_BYTES = 2**31 - 2**20


def index_shape(index: Index) -> tuple[int, ...]:
    """Shape of the array an index selects.

    Examples
    --------
    >>> index_shape((slice(2, 5), slice(0, 4)))
    (3, 4)
    """
    return tuple(max(0, s.stop - s.start) for s in index)


def split_extent(n: int, parts: int, part: int, align: int = 1) -> tuple[int, int]:
    """Start and stop of ``part`` when ``range(n)`` is split into ``parts`` balanced pieces.

    Piece boundaries fall on multiples of ``align`` (a chunk edge), so no chunk is shared by
    two pieces; the first ``units % parts`` pieces get one unit more. Pieces past the end
    are empty (``start == stop``).

    Examples
    --------
    >>> [split_extent(10, 3, p) for p in range(3)]
    [(0, 4), (4, 7), (7, 10)]
    >>> [split_extent(10, 3, p, align=4) for p in range(3)]
    [(0, 4), (4, 8), (8, 10)]
    >>> [split_extent(2, 4, p) for p in range(4)]
    [(0, 1), (1, 2), (2, 2), (2, 2)]
    """
    if parts < 1 or not 0 <= part < parts or align < 1 or n < 0:
        raise ValueError(f"bad split: n={n} parts={parts} part={part} align={align}")
    units = -(-n // align)
    base, extra = divmod(units, parts)
    start = part * base + min(part, extra)
    stop = start + base + (1 if part < extra else 0)
    return min(start * align, n), min(stop * align, n)


def slab(
    shape: Sequence[int],
    rank: int,
    nranks: int,
    axis: int = 0,
    chunks: Sequence[int] | None = None,
) -> Index:
    """The hyperslab of ``rank``: the dataset split along ``axis`` into chunk-aligned pieces.

    Examples
    --------
    >>> slab((10, 4), 1, 3)
    (slice(4, 7, None), slice(0, 4, None))
    >>> slab((10, 4), 1, 3, axis=1)
    (slice(0, 10, None), slice(2, 3, None))
    >>> slab((3, 4), 3, 4)  # more ranks than rows: an empty slab
    (slice(3, 3, None), slice(0, 4, None))
    """
    if not shape:
        return ()
    align = chunks[axis] if chunks else 1
    start, stop = split_extent(shape[axis], nranks, rank, align)
    return tuple(slice(start, stop) if ax == axis else slice(0, n) for ax, n in enumerate(shape))


def process_grid(nranks: int, shape: Sequence[int]) -> tuple[int, ...]:
    """A balanced process grid over the axes of ``shape`` (like ``MPI_Dims_create``).

    Factors of ``nranks`` go, largest first, to the axis with the most elements per part.

    Examples
    --------
    >>> process_grid(4, (100, 100))
    (2, 2)
    >>> process_grid(6, (1000, 10, 10))
    (6, 1, 1)
    >>> process_grid(3, ())
    ()
    """
    grid = [1] * len(shape)
    if not shape:
        return ()
    factors: list[int] = []
    rest, f = nranks, 2
    while rest > 1:
        while rest % f == 0:
            factors.append(f)
            rest //= f
        f += 1
    for factor in sorted(factors, reverse=True):
        axis = max(range(len(shape)), key=lambda a: shape[a] / grid[a])
        grid[axis] *= factor
    return tuple(grid)


def block(
    shape: Sequence[int],
    rank: int,
    grid: Sequence[int],
    chunks: Sequence[int] | None = None,
) -> Index:
    """The N-d block of ``rank`` in a process ``grid`` (ranks numbered in C order).

    Examples
    --------
    >>> block((10, 6), 3, (2, 2))
    (slice(5, 10, None), slice(3, 6, None))
    >>> block((10, 6), 1, (2, 2), chunks=(4, 4))
    (slice(0, 8, None), slice(4, 6, None))
    """
    if math.prod(grid) < 1 or rank >= math.prod(grid):
        raise ValueError(f"rank {rank} outside process grid {tuple(grid)}")
    coords: list[int] = []
    for parts in reversed(grid):
        rank, coord = divmod(rank, parts)
        coords.append(coord)
    coords.reverse()
    return tuple(
        slice(*split_extent(n, parts, c, chunks[ax] if chunks else 1))
        for ax, (n, parts, c) in enumerate(zip(shape, grid, coords, strict=True))
    )


def steps(
    region: Index,
    itemsize: int,
    budget: int,
    chunks: Sequence[int] | None = None,
) -> list[Index]:
    """Cut ``region`` into C-ordered steps of at most ``budget`` bytes each.

    The outermost axis along which whole inner sub-arrays fit is cut into runs (aligned to
    chunk edges when a run spans at least one chunk); the axes before it advance one index
    at a time and the axes after it are taken whole. A region whose inner axes are whole
    therefore yields steps that are contiguous in C order. Each step also stays below
    :data:`MAX_TRANSFER_BYTES`. An empty region has no steps; a scalar region one.

    Examples
    --------
    >>> steps((slice(0, 10), slice(0, 4)), itemsize=8, budget=96)
    [(slice(0, 3, None), slice(0, 4, None)), (slice(3, 6, None), slice(0, 4, None)), (slice(6, 9, None), slice(0, 4, None)), (slice(9, 10, None), slice(0, 4, None))]
    >>> steps((slice(0, 10), slice(0, 4)), itemsize=8, budget=96, chunks=(2, 4))
    [(slice(0, 2, None), slice(0, 4, None)), (slice(2, 4, None), slice(0, 4, None)), (slice(4, 6, None), slice(0, 4, None)), (slice(6, 8, None), slice(0, 4, None)), (slice(8, 10, None), slice(0, 4, None))]
    >>> steps((slice(0, 2), slice(0, 4)), itemsize=8, budget=16)
    [(slice(0, 1, None), slice(0, 2, None)), (slice(0, 1, None), slice(2, 4, None)), (slice(1, 2, None), slice(0, 2, None)), (slice(1, 2, None), slice(2, 4, None))]
    >>> steps((slice(5, 5), slice(0, 4)), itemsize=8, budget=96)
    []
    """
    budget = min(budget, MAX_TRANSFER_BYTES)
    if itemsize > budget:
        raise ValueError(f"one element ({itemsize} bytes) exceeds the step budget ({budget} bytes)")
    extents = index_shape(region)
    if any(e == 0 for e in extents):
        return []
    if not region:
        return [()]
    axis, inner = _cut_axis(extents, itemsize, budget)
    run = min(extents[axis], budget // inner)
    if chunks and run >= chunks[axis]:
        run -= run % chunks[axis]
    start, stop = region[axis].start, region[axis].stop
    edges = sorted({start, stop, *range(start - start % run + run, stop, run)})
    runs = [slice(a, b) for a, b in itertools.pairwise(edges)]
    outer = [[slice(i, i + 1) for i in range(s.start, s.stop)] for s in region[:axis]]
    return [(*prefix, r, *region[axis + 1 :]) for prefix in itertools.product(*outer) for r in runs]


def chunk_steps(
    region: Index,
    itemsize: int,
    budget: int,
    chunks: Sequence[int],
) -> list[Index]:
    """Cut ``region`` into steps made of whole chunks, as many as fit ``budget`` bytes.

    The chunk grid over ``region`` (chunks counted from 0 on every axis) is cut as
    :func:`steps` cuts elements, one chunk counting as one element: a step is a box of
    whole chunks along every axis (clipped only where ``region`` ends), never part of a
    chunk, so a filtered chunk is compressed once. A chunk larger than ``budget`` is a
    step of its own; one larger than an MPI-IO transfer (:data:`MAX_TRANSFER_BYTES`) is
    cut as :func:`steps` cuts elements.

    Examples
    --------
    >>> chunk_steps((slice(0, 8), slice(0, 8)), itemsize=1, budget=32, chunks=(2, 4))
    [(slice(0, 4, None), slice(0, 8, None)), (slice(4, 8, None), slice(0, 8, None))]
    >>> chunk_steps((slice(0, 5), slice(0, 8)), itemsize=1, budget=8, chunks=(2, 4))
    [(slice(0, 2, None), slice(0, 4, None)), (slice(0, 2, None), slice(4, 8, None)), (slice(2, 4, None), slice(0, 4, None)), (slice(2, 4, None), slice(4, 8, None)), (slice(4, 5, None), slice(0, 4, None)), (slice(4, 5, None), slice(4, 8, None))]
    >>> chunk_steps((slice(0, 4),), itemsize=8, budget=8, chunks=(4,))  # one chunk > budget
    [(slice(0, 4, None),)]
    """
    if not region:
        return [()]
    chunk_bytes = math.prod(chunks) * itemsize
    if chunk_bytes > MAX_TRANSFER_BYTES:
        return steps(region, itemsize, budget, chunks)
    grid = tuple(slice(s.start // c, -(-s.stop // c)) for s, c in zip(region, chunks, strict=True))
    boxes = steps(grid, chunk_bytes, max(budget, chunk_bytes))
    return [
        tuple(
            slice(max(g.start * c, s.start), min(g.stop * c, s.stop))
            for g, c, s in zip(box, chunks, region, strict=True)
        )
        for box in boxes
    ]


def _cut_axis(extents: Sequence[int], itemsize: int, budget: int) -> tuple[int, int]:
    """Outermost axis whose whole inner sub-arrays fit the budget, and their size in bytes."""
    inner = itemsize
    for axis in range(len(extents) - 1, 0, -1):
        if inner * extents[axis] > budget:
            return axis, inner
        inner *= extents[axis]
    return 0, inner


def flat_range(index: Index, shape: Sequence[int]) -> tuple[int, int]:
    """C-order flat ``[start, stop)`` of an index that is contiguous in ``shape``.

    Raises ``ValueError`` when the index is not one contiguous run of elements.

    Examples
    --------
    >>> flat_range((slice(1, 1 + 1), slice(2, 4)), (3, 5))
    (7, 9)
    >>> flat_range((slice(1, 3), slice(0, 5)), (3, 5))
    (5, 15)
    """
    extents = index_shape(index)
    if 0 in extents:
        return (0, 0)
    # After the first axis with more than one element, every axis must be whole.
    varying = next((ax for ax, e in enumerate(extents) if e > 1), len(extents))
    if any(extents[ax] != shape[ax] for ax in range(varying + 1, len(shape))):
        raise ValueError(f"index {index} is not contiguous in shape {tuple(shape)}")
    start = sum(s.start * math.prod(shape[ax + 1 :]) for ax, s in enumerate(index))
    return start, start + math.prod(extents)


def flat_range_boxes(start: int, stop: int, shape: Sequence[int]) -> list[Index]:
    """Hyperslabs that together hold C-order flat elements ``[start, stop)`` of ``shape``.

    At most ``2 * ndim - 1`` boxes, in C order (used to write a reshaped block).

    Examples
    --------
    >>> flat_range_boxes(3, 11, (3, 4))
    [(slice(0, 1, None), slice(3, 4, None)), (slice(1, 2, None), slice(0, 4, None)), (slice(2, 3, None), slice(0, 3, None))]
    >>> flat_range_boxes(0, 12, (3, 4))
    [(slice(0, 3, None), slice(0, 4, None))]
    """
    if start >= stop:
        return []
    if not shape:
        return [()]
    inner = math.prod(shape[1:])
    first, last = start // inner, (stop - 1) // inner
    if start % inner == 0 and stop % inner == 0:
        return [(slice(first, last + 1), *(slice(0, n) for n in shape[1:]))]
    if first == last:
        base = first * inner
        return [
            (slice(first, first + 1), *box)
            for box in flat_range_boxes(start - base, stop - base, shape[1:])
        ]
    head_stop = start if start % inner == 0 else (first + 1) * inner
    tail_start = stop if stop % inner == 0 else last * inner
    return [
        *flat_range_boxes(start, head_stop, shape),
        *flat_range_boxes(head_stop, tail_start, shape),
        *flat_range_boxes(tail_start, stop, shape),
    ]


def assign_files(
    sizes: Sequence[int], nranks: int, below: int
) -> tuple[list[int], list[list[int]]]:
    """Split files between file-level and dataset-level parallelism.

    Files of at least ``below`` bytes (or all files on one rank) are *shared*: every rank
    works on each of them together. Smaller files go whole to one rank each, largest first
    to the least-loaded rank (greedy), so many small dumps keep all ranks busy; fewer
    small files than ranks would leave ranks idle, so they are shared too (one file of
    2000 small datasets is spread over the ranks in batches).

    Returns the shared file indices and, per rank, the indices of its own files (in order).

    Examples
    --------
    >>> assign_files([10, 500, 30, 20, 10], nranks=2, below=100)
    ([1], [[2, 4], [0, 3]])
    >>> assign_files([10, 20], nranks=1, below=100)
    ([0, 1], [[]])
    >>> assign_files([10, 500, 30], nranks=3, below=100)  # two small files, three ranks
    ([0, 1, 2], [[], [], []])
    """
    if nranks == 1:
        return list(range(len(sizes))), [[]]
    if sum(n < below for n in sizes) < nranks:
        return list(range(len(sizes))), [[] for _ in range(nranks)]
    shared = [i for i, n in enumerate(sizes) if n >= below]
    return shared, spread(sizes, nranks, [i for i, n in enumerate(sizes) if n < below])


def spread(
    sizes: Sequence[int], nranks: int, which: Sequence[int] | None = None
) -> list[list[int]]:
    """Items ``which`` (default all) of ``sizes`` dealt to ranks: largest first to the least loaded.

    Returns, per rank, its item indices in order.

    >>> spread([10, 40, 30, 20], 2), spread([10, 40], 1), spread([5], 3)
    ([[0, 1], [2, 3]], [[0, 1]], [[0], [], []])
    """
    items = range(len(sizes)) if which is None else which
    load = [0] * nranks
    own: list[list[int]] = [[] for _ in range(nranks)]
    for i in sorted(items, key=lambda i: (-sizes[i], i)):
        r = min(range(nranks), key=lambda r: (load[r], r))
        own[r].append(i)
        load[r] += sizes[i]
    return [sorted(files) for files in own]
