"""Units of a chunked output are boxes of whole chunks: property tests over shapes, chunks
and budgets (chunks larger than the budget included), directly and through the plan."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from h5par.core.decomposition import chunk_steps, index_shape
from h5par.core.units import Target
from h5par.engine.plan import input_cache, unit_note, units
from h5par.kernels import Chain


@st.composite
def chunked(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...]]:
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.integers(1, 14)) for _ in range(ndim))
    chunks = tuple(draw(st.integers(1, n + 2)) for n in shape)  # may exceed the extent
    return shape, chunks


def coverage(shape: tuple[int, ...], boxes: list[tuple[slice, ...]]) -> np.ndarray:
    counts = np.zeros(shape, dtype=np.int64)
    for box in boxes:
        counts[box] += 1
    return counts


def whole_chunks(box: tuple[slice, ...], shape: tuple[int, ...], chunks: tuple[int, ...]) -> bool:
    """Every edge of ``box`` is a chunk edge or the end of the dataset."""
    return all(
        s.start % c == 0 and (s.stop % c == 0 or s.stop == n)
        for s, c, n in zip(box, chunks, shape, strict=True)
    )


@settings(max_examples=300, deadline=None)
@given(case=chunked(), itemsize=st.sampled_from([1, 4, 8]), budget_items=st.integers(1, 400))
def test_chunk_steps_tile_the_region_with_whole_chunks(case, itemsize, budget_items) -> None:
    shape, chunks = case
    region = tuple(slice(0, n) for n in shape)
    budget = budget_items * itemsize
    boxes = chunk_steps(region, itemsize, budget, chunks)
    assert (coverage(shape, boxes) == 1).all()
    chunk_bytes = math.prod(chunks) * itemsize
    for box in boxes:
        assert whole_chunks(box, shape, chunks), (box, chunks)
        assert math.prod(index_shape(box)) * itemsize <= max(budget, chunk_bytes)


@settings(max_examples=200, deadline=None)
@given(
    case=chunked(),
    dtype=st.sampled_from(["f4", "f8", "i2"]),
    budget=st.sampled_from([64, 256, 4096, 1 << 16, 1 << 20]),
    chain=st.sampled_from(
        [
            [],
            [{"name": "clip", "min": 0}],
            [{"name": "reduce", "op": "mean"}],
            [{"name": "abs"}] * 6,
        ]
    ),
)
def test_units_of_a_filtered_output_never_split_a_chunk(case, dtype, budget, chain) -> None:
    shape, chunks = case
    dt = np.dtype(dtype)
    create = {"chunks": chunks, "compression": "gzip", "shuffle": True}
    target = Target("/x", shape, dt, shape, dt, chunks, create)
    built = Chain.from_specs(chain)
    if budget < 8 * 4 and built.reducers:
        return  # one float64 element in a quarter of the budget: refused at inspection
    blocks = units(target, built, budget)
    assert (coverage(shape, blocks) == 1).all()
    assert all(whole_chunks(b, shape, chunks) for b in blocks)
    if unit_note(target, built, budget) is not None:  # a chunk exceeds a unit's share
        assert all(
            all(s.stop - s.start <= c for s, c in zip(b, chunks, strict=True)) for b in blocks
        ), "each unit is one whole chunk"


def test_a_reduction_along_an_axis_keeps_many_units_in_one_output_chunk() -> None:
    # A time mean's output is small (one 1 MiB chunk here) and its input large: its units
    # stay budget-sized output blocks so that ranks share the reading.
    chain = Chain.from_specs([{"name": "reduce", "op": "mean", "axis": 0}])
    shape, out = (1000, 512, 512), (512, 512)
    create = {"chunks": out}  # the output's chunk
    target = Target("/x", shape, np.dtype("f4"), out, np.dtype("f4"), out, create, axes=(0,))
    blocks = units(target, chain, budget=256 << 20)
    assert len(blocks) >= 64 and (coverage(out, blocks) == 1).all()
    assert unit_note(target, chain, 256 << 20) is None


def test_a_reduction_reads_filtered_chunks_whole_and_unfiltered_ones_in_part() -> None:
    # A time mean of gzip dumps chunked (1, 512, 512): a unit of 8 rows would decompress
    # every chunk, once per unit. Units are whole chunks along the kept axes, read in
    # pieces along time. Unfiltered chunks keep many units, read without HDF5's chunk
    # cache: the part of each chunk a unit needs, straight from the file.
    chain = Chain.from_specs([{"name": "reduce", "op": "mean", "axis": 0}])
    shape, out = (768, 1024, 512), (1024, 512)
    plain = Target("/x", shape, np.dtype("f4"), out, np.dtype("f4"), None, {}, axes=(0,))
    gzip = dataclasses.replace(plain, stored=(1, 512, 512))
    assert units(gzip, chain, budget=256 << 20) == [
        (slice(0, 512), slice(0, 512)),
        (slice(512, 1024), slice(0, 512)),
    ]
    tiny = units(gzip, chain, budget=1 << 20)  # a chunk's accumulators exceed the budget
    assert len(tiny) > 2 and (coverage(out, tiny) == 1).all()
    direct = dataclasses.replace(plain, direct=True)
    assert len(units(direct, chain, budget=256 << 20)) >= 64
    assert input_cache(direct, chain, 256 << 20) == (0, 521)
    assert input_cache(gzip, chain, 256 << 20) is None


def test_the_table_workload_writes_each_gzip_chunk_in_one_unit() -> None:
    # Issue 18's field: (128, 1024, 1024) float32, chunks (4, 256, 256), default budget.
    shape, chunks = (128, 1024, 1024), (4, 256, 256)
    target = Target("/f", shape, np.dtype("f4"), shape, np.dtype("f4"), chunks, {})
    blocks = units(target, Chain.from_specs([{"name": "clip", "min": 0}]), 256 << 20)
    assert all(whole_chunks(b, shape, chunks) for b in blocks)
    assert len(blocks) >= 64 and (coverage(shape, blocks[:2]) <= 1).all()


def test_plan_says_when_one_chunk_exceeds_the_budget() -> None:
    target = Target("/f", (64, 64), np.dtype("f8"), (64, 64), np.dtype("f8"), (64, 64), {})
    note = unit_note(target, Chain(), budget=64 << 10)
    assert note is not None and "[64, 64]" in note and "whole chunk" in note
    assert units(target, Chain(), budget=64 << 10) == [(slice(0, 64), slice(0, 64))]
    assert unit_note(target, Chain(), budget=64 << 20) is None
