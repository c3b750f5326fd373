"""How much of HDF5's chunk cache a sweep needs so that no input chunk is decompressed twice.

HDF5 decompresses a whole chunk to read any part of it, and keeps it only if it fits the
dataset's chunk cache (1 MiB by default). When the units of a sweep do not follow the
input's chunks (a rechunking job: input chunks ``(1, 1024, 1024)``, output chunks
``(8, 128, 128)``), consecutive units read parts of the same input chunks; with a cache
that holds the chunks one unit touches, the next unit finds them decompressed. Pure
arithmetic on boxes, the same on every rank.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from h5par.core.decomposition import Index

__all__ = ["ChunkCache", "chunk_cache", "slots"]

#: HDF5's advice: about 100 hash slots per chunk the cache holds, a prime number.
SLOTS_PER_CHUNK = 100
#: HDF5's default cache: bytes and slots (never fewer).
DEFAULT_BYTES = 1 << 20
DEFAULT_SLOTS = 521

ChunkCache = tuple[int, int]  # (bytes, hash slots) of a dataset's chunk cache
_Grid = tuple[tuple[int, int], ...]  # the chunks a box touches: [first, last + 1) per axis


def _grid(box: Index, chunks: Sequence[int]) -> _Grid:
    return tuple(
        (s.start // c, -(-s.stop // c)) if s.stop > s.start else (0, 0)
        for s, c in zip(box, chunks, strict=True)
    )


def _count(grid: _Grid) -> int:
    return math.prod(max(0, b - a) for a, b in grid)


def _shared(one: _Grid, other: _Grid) -> int:
    return _count(tuple((max(a, c), min(b, d)) for (a, b), (c, d) in zip(one, other, strict=True)))


def slots(chunks_held: int) -> int:
    """Hash slots for a cache of ``chunks_held`` chunks: a prime near 100 per chunk.

    >>> slots(1), slots(9)
    (521, 907)
    """
    n = max(DEFAULT_SLOTS, SLOTS_PER_CHUNK * chunks_held)
    while any(n % d == 0 for d in range(2, math.isqrt(n) + 1)):
        n += 1
    return n


def chunk_cache(
    boxes: Sequence[Index], chunks: Sequence[int], itemsize: int, limit: int
) -> ChunkCache | None:
    """The chunk cache for reading ``boxes`` in order from an input of ``chunks`` (None: default).

    Consecutive boxes that touch the same chunks (a box ends inside a chunk) read them
    twice; a cache holding every chunk of both boxes, plus one, decompresses each once.
    Boxes that share no chunk with the next need no cache (each chunk is read whole by
    one box). ``limit`` caps the bytes (what the memory budget leaves); a cache no larger
    than HDF5's default (1 MiB) or of fewer than two chunks keeps the default.

    Examples
    --------
    Output chunks ``(8, 128, 128)`` over input chunks ``(1, 1024, 1024)`` of float32: units
    of 8 x 256 x 1024 each read a quarter of the same 8 input chunks of 4 MiB.

    >>> boxes = [(slice(0, 8), slice(a, a + 256), slice(0, 1024)) for a in range(0, 1024, 256)]
    >>> nbytes, nslots = chunk_cache(boxes, (1, 1024, 1024), 4, 1 << 30)
    >>> nbytes >> 20, nslots
    (36, 907)
    >>> chunk_cache(boxes, (8, 256, 1024), 4, 1 << 30) is None  # each chunk in one box
    True
    >>> chunk_cache(boxes, (1, 1024, 1024), 4, 1 << 20) is None  # no room for two chunks
    True
    """
    chunk_bytes = math.prod(chunks) * itemsize
    grids = [_grid(box, chunks) for box in boxes]
    held = 0
    for one, other in itertools.pairwise(grids):
        if shared := _shared(one, other):
            held = max(held, _count(one) + _count(other) - shared + 1)
    held = min(held, limit // max(1, chunk_bytes))
    if held < 2 or held * chunk_bytes <= DEFAULT_BYTES:
        return None
    return held * chunk_bytes, slots(held)
