"""Decomposition is pure arithmetic: property tests over shapes x ranks x budgets."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from h5par.core.decomposition import (
    MAX_TRANSFER_BYTES,
    block,
    flat_range,
    flat_range_boxes,
    index_shape,
    process_grid,
    slab,
    split_extent,
    steps,
)

shapes = st.lists(st.integers(0, 13), min_size=1, max_size=4).map(tuple)


def coverage(shape, indices) -> np.ndarray:
    counts = np.zeros(shape, dtype=np.int64)
    for index in indices:
        counts[index] += 1
    return counts


@given(shape=shapes, nranks=st.integers(1, 9), axis=st.integers(0, 3), chunk=st.integers(1, 5))
def test_slabs_cover_every_element_once(shape, nranks, axis, chunk) -> None:
    axis %= len(shape)
    chunks = tuple(chunk if ax == axis else 1 for ax in range(len(shape)))
    slabs = [slab(shape, r, nranks, axis, chunks) for r in range(nranks)]
    assert (coverage(shape, slabs) == 1).all()
    for s in slabs:  # boundaries on chunk edges (or the end): no chunk shared by two ranks
        assert s[axis].start % chunk == 0 or s[axis].start == shape[axis]


@given(n=st.integers(0, 100), parts=st.integers(1, 12))
def test_split_extent_is_balanced(n, parts) -> None:
    sizes = [b - a for a, b in (split_extent(n, parts, p) for p in range(parts))]
    assert sum(sizes) == n and max(sizes) - min(sizes) <= 1


@given(shape=shapes, nranks=st.integers(1, 8))
def test_blocks_cover_every_element_once(shape, nranks) -> None:
    grid = process_grid(nranks, shape)
    assert math.prod(grid) == nranks
    blocks = [block(shape, r, grid) for r in range(nranks)]
    assert (coverage(shape, blocks) == 1).all()


@settings(max_examples=300)
@given(
    shape=shapes,
    nranks=st.integers(1, 5),
    itemsize=st.sampled_from([1, 2, 4, 8]),
    budget_items=st.integers(1, 200),
    chunk=st.integers(1, 4),
)
def test_steps_cover_region_within_budget_in_c_order(
    shape, nranks, itemsize, budget_items, chunk
) -> None:
    budget = budget_items * itemsize
    chunks = (chunk,) + (1,) * (len(shape) - 1)
    all_steps = []
    for r in range(nranks):
        region = slab(shape, r, nranks, 0, chunks)
        rank_steps = steps(region, itemsize, budget, chunks)
        for step in rank_steps:
            assert math.prod(index_shape(step)) * itemsize <= budget
        # Steps of a slab are contiguous runs in C order, in increasing order.
        ranges = [flat_range(s, shape) for s in rank_steps]
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        all_steps += rank_steps
    assert (coverage(shape, all_steps) == 1).all()


def test_steps_never_exceed_the_mpi_io_limit() -> None:
    # 10 GiB of float64 rows with an 8 GiB budget: every transfer stays under 2 GiB.
    shape = (10 * 2**30 // (8 * 2**20), 2**20)
    region = tuple(slice(0, n) for n in shape)
    cut = steps(region, 8, 8 * 2**30)
    assert all(math.prod(index_shape(s)) * 8 <= MAX_TRANSFER_BYTES for s in cut)
    assert sum(math.prod(index_shape(s)) for s in cut) == math.prod(shape)
    assert len(cut) == 6


def test_steps_reject_budget_below_one_element() -> None:
    with pytest.raises(ValueError, match="one element"):
        steps((slice(0, 4),), 8, 4)


def test_scalar_region_is_one_step() -> None:
    assert steps((), 8, 64) == [()]


@given(shape=shapes, data=st.data())
def test_flat_range_boxes_hold_exactly_the_range(shape, data) -> None:
    total = math.prod(shape)
    start = data.draw(st.integers(0, total))
    stop = data.draw(st.integers(start, total))
    boxes = flat_range_boxes(start, stop, shape)
    assert len(boxes) <= max(1, 2 * len(shape) - 1)
    flat = np.arange(total).reshape(shape)
    got = np.concatenate([flat[b].ravel() for b in boxes]) if boxes else np.array([], int)
    assert got.tolist() == list(range(start, stop))
