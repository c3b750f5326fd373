"""The input chunk cache of a rechunking sweep: every chunk decompressed once, budget kept.

A simulated LRU cache of the planned size, fed the chunks each unit touches in unit order,
must load every input chunk exactly once whenever the plan sizes a cache (property test over
shapes, input and output chunks and budgets); the engine must open the input with it.
"""

from __future__ import annotations

import collections
import itertools
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import h5par
from h5par.core.units import Target
from h5par.engine import execute
from h5par.engine.plan import fraction, input_cache, units
from h5par.hdf5.io import open_dataset
from h5par.kernels import Chain


def touched(box: tuple[slice, ...], chunks: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The chunks ``box`` intersects, in C order (the order HDF5 visits them)."""
    ranges = [range(s.start // c, -(-s.stop // c)) for s, c in zip(box, chunks, strict=True)]
    return list(itertools.product(*ranges))


def loads(boxes: list[tuple[slice, ...]], chunks: tuple[int, ...], capacity: int) -> int:
    """How many chunks an LRU cache of ``capacity`` chunks decompresses reading ``boxes``."""
    cache: collections.OrderedDict[tuple[int, ...], None] = collections.OrderedDict()
    count = 0
    for box in boxes:
        for chunk in touched(box, chunks):
            if chunk in cache:
                cache.move_to_end(chunk)
                continue
            count += 1
            cache[chunk] = None
            if len(cache) > capacity:
                cache.popitem(last=False)
    return count


@st.composite
def rechunking(draw: st.DrawFn) -> tuple[Target, int]:
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 40)) for _ in range(ndim))
    out = tuple(draw(st.integers(1, n)) for n in shape)
    stored = tuple(draw(st.integers(1, n)) for n in shape)
    itemsize = draw(st.sampled_from([1 << 10, 1 << 14]))  # bytes: chunks near the 1 MiB default
    dtype = np.dtype((np.void, itemsize))
    target = Target("/x", shape, dtype, shape, dtype, out, {}, stored=stored)
    return target, draw(st.sampled_from([1 << 20, 4 << 20, 16 << 20, 64 << 20]))


def runs(boxes: list[tuple[slice, ...]], chunks: tuple[int, ...]) -> int:
    """Chunk loads when each chunk stays cached while consecutive boxes touch it.

    The sum over chunks of the maximal runs of consecutive boxes touching it.
    """
    last: dict[tuple[int, ...], int] = {}
    count = 0
    for i, box in enumerate(boxes):
        for chunk in touched(box, chunks):
            count += last.get(chunk) != i - 1
            last[chunk] = i
    return count


@settings(max_examples=300, deadline=None)
@given(rechunking())
def test_a_planned_cache_keeps_what_consecutive_units_share_within_the_budget(case) -> None:
    target, budget = case
    assert target.stored is not None
    chain = Chain()
    try:
        blocks = units(target, chain, budget)
    except h5par.UsageError:  # a chunk larger than the budget allows
        return
    cache = input_cache(target, chain, budget)
    chunk_bytes = math.prod(target.stored) * target.dtype.itemsize
    default = loads(blocks, target.stored, (1 << 20) // chunk_bytes)
    if cache is None:
        return
    nbytes, nslots = cache
    largest = max(math.prod(b.stop - b.start for b in box) for box in blocks)
    assert nbytes + fraction(chain) * largest * target.dtype.itemsize <= budget
    assert nbytes % chunk_bytes == 0 and nbytes > 1 << 20 and nslots >= 521
    capacity = nbytes // chunk_bytes
    reads = loads(blocks, target.stored, capacity)
    assert reads <= default
    pairs = [
        len(set(touched(a, target.stored)) | set(touched(b, target.stored)))
        for a, b in itertools.pairwise(blocks)
    ]
    if capacity > max(pairs):  # the budget did not cap it
        every = {c for box in blocks for c in touched(box, target.stored)}
        assert len(every) <= reads <= runs(blocks, target.stored)


def test_the_rechunking_example_of_the_issue_is_read_once() -> None:
    """Input chunks (1, 1024, 1024) to output (8, 128, 128), float32, the default budget."""
    shape, f4 = (128, 1024, 1024), np.dtype("f4")
    target = Target("/x", shape, f4, shape, f4, (8, 128, 128), {}, stored=(1, 1024, 1024))
    cache = input_cache(target, Chain(), 256 << 20)
    assert cache is not None
    blocks = units(target, Chain(), 256 << 20)
    capacity = cache[0] // (4 << 20)
    assert loads(blocks, (1, 1024, 1024), capacity) == 128
    assert loads(blocks, (1, 1024, 1024), 0) == sum(
        len(touched(b, (1, 1024, 1024))) for b in blocks
    )
    assert cache[0] <= 64 << 20


@pytest.mark.parametrize("shape", [(0, 1024), (8, 0), (1, 1024)])
def test_an_empty_or_one_unit_dataset_keeps_the_default_cache(shape) -> None:
    f4 = np.dtype("f4")
    target = Target("/x", shape, f4, shape, f4, (1, 128), {}, stored=(1, 1024))
    assert input_cache(target, Chain(), 1 << 20) is None


def test_open_dataset_gives_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros((8, 64), "f4"), chunks=(1, 64), compression="gzip")
    with h5py.File(path, "r") as f:
        assert open_dataset(f, "x", None).id.get_access_plist().get_chunk_cache()[:2] == (
            521,
            1 << 20,
        )
    with h5py.File(path, "r") as f:
        dset = open_dataset(f, "/x", (3 << 20, 907))
        assert dset.id.get_access_plist().get_chunk_cache()[:2] == (907, 3 << 20)
        assert np.array_equal(dset[...], np.zeros((8, 64), "f4"))


@pytest.mark.parametrize("stored", [(1, 256, 1024), (8, 32, 32)])
def test_a_run_reads_its_input_through_the_planned_cache(tmp_path, monkeypatch, stored) -> None:
    """The data pass opens the input with input_cache's cache; the output equals numpy."""
    data = np.random.default_rng(3).normal(size=(16, 256, 1024)).astype("f4")
    src, out = tmp_path / "in.h5", tmp_path / "out.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("x", data=data, chunks=stored, compression="gzip", shuffle=True)
    seen: list[tuple[int, int]] = []

    def spy(group: h5py.Group, path: str, cache: tuple[int, int] | None) -> h5py.Dataset:
        dset = open_dataset(group, path, cache)
        seen.append(dset.id.get_access_plist().get_chunk_cache()[:2])
        return dset

    monkeypatch.setattr(execute, "open_dataset", spy)
    options = h5par.OutputOptions(chunks=(8, 32, 32), compression="gzip")
    h5par.apply(src, out, [{"name": "clip", "min": 0.0}], memory="64MiB", options=options)
    shape, f4 = data.shape, np.dtype("f4")
    target = Target("/x", shape, f4, shape, f4, (8, 32, 32), {}, stored=stored)
    planned = input_cache(target, Chain.from_specs([{"name": "clip", "min": 0.0}]), 64 << 20)
    assert seen == [(521, 1 << 20) if planned is None else planned[::-1]]
    assert (planned is None) == (stored == (8, 32, 32))
    with h5py.File(out, "r") as f:
        got = f["x"]
        assert got.chunks == (8, 32, 32)
        assert got[...].tobytes() == np.clip(data, np.float32(0), None).tobytes()
