"""Kernels applied block by block equal a plain numpy reference on the whole array.

References here are written in numpy directly, never with h5par's kernels.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from h5par.core.decomposition import index_shape, slab, steps
from h5par.errors import UsageError
from h5par.kernels import Chain, KernelError, Partial, Reduce, Scratch, combine_all, make_kernel

FLOATS = hnp.arrays(
    dtype=st.sampled_from([np.float64, np.float32]),
    shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=7),
    elements={"allow_nan": True, "allow_infinity": True, "allow_subnormal": True},
)


def blockwise(chain: Chain, x: np.ndarray, nranks: int, budget_items: int) -> np.ndarray:
    """Apply ``chain`` the way the runner does: slabs per rank, steps per slab.

    Each block is transformed twice, in fresh arrays and in one scratch per rank reused
    from step to step (as the runner does); both must give the same bits.
    """
    out_dtype, out_shape = chain.check(x.dtype, x.shape)
    out = np.empty(x.shape, out_dtype)
    for r in range(nranks):
        scratch = Scratch()
        for index in steps(slab(x.shape, r, nranks), x.itemsize, budget_items * x.itemsize):
            block = x[index].copy()
            fresh = chain.apply(block, index)[0]
            reused = chain.apply(block, index, scratch=scratch)[0]
            assert same_bits(reused, fresh) and same_bits(block, x[index])
            out[index] = reused
    return out.reshape(out_shape)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@settings(max_examples=150, deadline=None)
@given(
    x=FLOATS,
    nranks=st.integers(1, 4),
    budget=st.integers(1, 40),
    lo=st.floats(-2, 0),
    hi=st.floats(0, 2),
)
def test_clip_scale_abs_bitwise(x, nranks, budget, lo, hi) -> None:
    with np.errstate(all="ignore"):
        chain = Chain.from_specs([{"name": "clip", "min": lo, "max": hi}])
        assert same_bits(blockwise(chain, x, nranks, budget), np.clip(x, lo, hi))
        chain = Chain.from_specs([{"name": "scale", "factor": 2.5, "offset": -1}, {"name": "abs"}])
        assert same_bits(blockwise(chain, x, nranks, budget), np.abs(x * 2.5 + -1))
        chain = Chain.from_specs([{"name": "scale", "factor": 3}])
        assert same_bits(blockwise(chain, x, nranks, budget), x * 3)


@settings(max_examples=100, deadline=None)
@given(x=FLOATS, nranks=st.integers(1, 4), budget=st.integers(1, 40))
def test_where_and_fill_bitwise(x, nranks, budget) -> None:
    with np.errstate(all="ignore"):
        expected = x.copy()
        expected[x < 0] = -1 * x[x < 0]  # the book's boolean-mask assignment
        chain = Chain.from_specs([{"name": "where", "condition": "x < 0", "value": "-1 * x"}])
        assert same_bits(blockwise(chain, x, nranks, budget), expected)
        expected = x.copy()
        expected[np.isnan(x)] = 7.0
        chain = Chain.from_specs([{"name": "fill", "value": 7.0}])
        assert same_bits(blockwise(chain, x, nranks, budget), expected)


def test_fill_with_sentinel_on_integers() -> None:
    x = np.array([1, -9999, 3, -9999], dtype=np.int32)
    out = make_kernel({"name": "fill", "value": 0, "missing": -9999})(x, (slice(0, 4),))
    assert out.tolist() == [1, 0, 3, 0] and out.dtype == np.int32
    with pytest.raises(UsageError, match="cannot hold NaN"):
        make_kernel({"name": "fill", "value": 0}).check(np.dtype("i4"), (4,))


def _saturated_int8(x: np.ndarray) -> np.ndarray:
    return np.clip(x, -128, 127).astype(np.int8)


SCRATCH_CASES = {
    "clip-float": (
        {"name": "clip", "min": -0.5, "max": 0.5},
        "f4",
        lambda x: np.clip(x, -0.5, 0.5),
    ),
    "clip-int": ({"name": "clip", "min": -3, "max": 40}, "i2", lambda x: np.clip(x, -3, 40)),
    "astype-float": ({"name": "astype", "dtype": "float32"}, "f8", lambda x: x.astype("f4")),
    "astype-int": (
        {"name": "astype", "dtype": "int8", "overflow": "saturate"},
        "i8",
        _saturated_int8,
    ),
    "astype-float-int": ({"name": "astype", "dtype": "int16"}, "f8", lambda x: x.astype("i2")),
    "scale": ({"name": "scale", "factor": 2.5, "offset": -1}, "f8", lambda x: x * 2.5 + -1),
    "scale-promotes": ({"name": "scale", "factor": 3, "offset": 0.5}, "i4", lambda x: x * 3 + 0.5),
    "abs-complex": ({"name": "abs"}, "c8", np.abs),
    "fill": ({"name": "fill", "value": 7.0}, "f8", lambda x: np.where(np.isnan(x), 7.0, x)),
}


@pytest.mark.parametrize("case", sorted(SCRATCH_CASES))
def test_kernel_writes_into_its_scratch_bitwise(case) -> None:
    spec, dtype, reference = SCRATCH_CASES[case]
    kernel, scratch = make_kernel(spec), Scratch()
    rng = np.random.default_rng(5)
    results = []
    for n in (40, 40, 13):  # the last block is smaller: a view of the same memory
        x = (rng.normal(size=n) + 1j * rng.normal(size=n)) * 60
        x = (x if dtype[0] == "c" else x.real.round()).astype(dtype)
        if dtype[0] == "f":
            x[::7] = np.nan if spec["name"] == "fill" else x[::7] / 3
        before = x.copy()
        results.append(kernel(x, (slice(0, n),), scratch))
        assert same_bits(results[-1], reference(x)) and same_bits(x, before)
    assert all(np.shares_memory(results[0], r) for r in results[1:])


def test_reduce_std_temporary_goes_into_scratch() -> None:
    kernel, scratch = Reduce(op=["std", "min"]), Scratch()
    x = np.random.default_rng(2).normal(size=(30, 7))
    part = kernel.partial(x, scratch)
    assert part == kernel.partial(x)
    deviations = scratch.take(x.shape, np.float64, "deviations")
    assert same_bits(deviations, np.square(x - part.mean))


def test_chain_copies_a_passed_through_block_before_filling() -> None:
    chain = Chain.from_specs(
        [{"name": "reduce", "op": "count"}, {"name": "reshape", "shape": [-1]}]
    )
    x = np.array([1.0, -9999.0, np.nan])
    out, (part,) = chain.apply(x, (slice(0, 3),), fill=np.nan, scratch=Scratch())
    assert part.count == 2 and not np.shares_memory(out, x) and np.isnan(x[2])


def test_astype_book_case_1e256_is_inf() -> None:
    x = np.array([1e256, -1e256, 1.5, np.nan])
    out = make_kernel({"name": "astype", "dtype": "float32"})(x, (slice(0, 4),))
    with np.errstate(over="ignore"):
        assert same_bits(out, x.astype(np.float32))
    assert out[0] == np.inf and out[1] == -np.inf


@pytest.mark.parametrize(
    "dtype", ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"]
)
def test_astype_float_to_int_saturate_matches_python(dtype) -> None:
    info = np.iinfo(dtype)
    x = np.array(
        [
            -1e30,
            -(2.0**63),
            -129.5,
            -1.9,
            -0.5,
            0.0,
            0.7,
            127.9,
            255.5,
            65535.2,
            2.0**31,
            2.0**63,
            2.0**64,
            1e30,
            np.inf,
            -np.inf,
        ]
    )
    out = make_kernel({"name": "astype", "dtype": dtype, "overflow": "saturate"})(
        x, (slice(0, x.size),)
    )
    expected = [
        min(max(math.trunc(v), info.min), info.max)
        if math.isfinite(v)
        else (info.max if v > 0 else info.min)
        for v in x
    ]
    assert out.dtype == np.dtype(dtype) and out.tolist() == expected


def test_astype_error_names_value_and_position() -> None:
    x = np.array([[1.0, 2.0], [3.0, 40000.0]])
    kernel = make_kernel({"name": "astype", "dtype": "int16"})
    with pytest.raises(
        KernelError, match=r"value 40000.0 at index \(11, 1\) does not fit int16 \(-32768..32767\)"
    ):
        kernel(x, (slice(10, 12), slice(0, 2)))
    with pytest.raises(KernelError, match="nan"):
        kernel(np.array([np.nan]), (slice(0, 1),))
    ok = np.array([-32768.9, 32767.9])
    assert kernel(ok, (slice(0, 2),)).tolist() == [-32768, 32767]


def test_astype_int_to_int_modes() -> None:
    x = np.array([-300, -128, 0, 127, 300], dtype=np.int64)
    idx = (slice(0, 5),)
    assert same_bits(
        make_kernel({"name": "astype", "dtype": "int8", "overflow": "wrap"})(x, idx),
        x.astype(np.int8),
    )
    sat = make_kernel({"name": "astype", "dtype": "int8", "overflow": "saturate"})(x, idx)
    assert sat.tolist() == [-128, -128, 0, 127, 127]
    with pytest.raises(KernelError, match="value -300"):
        make_kernel({"name": "astype", "dtype": "int8"})(x, idx)
    u = np.array([0, 2**64 - 1], dtype=np.uint64)
    assert make_kernel({"name": "astype", "dtype": "int64", "overflow": "saturate"})(
        u, (slice(0, 2),)
    ).tolist() == [0, 2**63 - 1]


def test_astype_rejects_bad_choices() -> None:
    with pytest.raises(UsageError, match="overflow = 'clamp' \\(valid: error, saturate, wrap\\)"):
        make_kernel({"name": "astype", "dtype": "int8", "overflow": "clamp"})
    with pytest.raises(UsageError, match="only applies to integer"):
        make_kernel({"name": "astype", "dtype": "int8", "overflow": "wrap"}).check(
            np.dtype("f8"), (3,)
        )
    with pytest.raises(UsageError, match="not a numpy dtype name"):
        make_kernel({"name": "astype", "dtype": "floot32"})


@settings(max_examples=60, deadline=None)
@given(
    x=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=6),
        elements=st.floats(-1e3, 1e3),
    ),
    nranks=st.integers(1, 4),
    budget=st.integers(1, 30),
    data=st.data(),
)
def test_broadcast_bitwise(x, nranks, budget, data) -> None:
    axis = data.draw(st.integers(0, x.ndim - 1))
    row = data.draw(st.integers(0, x.shape[axis] - 1))
    chain = Chain.from_specs(
        [{"name": "scale", "factor": 3}, {"name": "broadcast", "index": row, "axis": axis}]
    )
    source_index = chain.kernels[1].source_index(x.shape)
    source = chain.prefix(1).apply(x[source_index], source_index)[0]
    chain = chain.replace(1, chain.kernels[1].with_source(source))
    expected = x * 3
    expected[...] = np.take(x * 3, [row], axis=axis)  # dset[:, :] = dset[0, :] generalised
    assert same_bits(blockwise(chain, x, nranks, budget), expected)


def test_reshape_book_shape_and_errors() -> None:
    chain = Chain.from_specs([{"name": "reshape", "shape": [100, 2, 240, 640]}])
    assert chain.check(np.dtype("f4"), (100, 480, 640)) == (np.dtype("f4"), (100, 2, 240, 640))
    with pytest.raises(
        UsageError, match=r"cannot reshape \(100, 480, 640\) .* into \(100, 2, 240, 641\)"
    ):
        Chain.from_specs([{"name": "reshape", "shape": [100, 2, 240, 641]}]).check(
            np.dtype("f4"), (100, 480, 640)
        )
    with pytest.raises(UsageError, match="cannot follow 'reshape'"):
        Chain.from_specs([{"name": "reshape", "shape": [-1]}, {"name": "broadcast"}])


def numpy_stats(x: np.ndarray, skipna: bool, bins: int) -> dict:
    data = x[~np.isnan(x)] if skipna else x
    with np.errstate(all="ignore"):
        return {
            "min": float(np.min(data)) if data.size else math.nan,
            "max": float(np.max(data)) if data.size else math.nan,
            "sum": float(np.sum(data, dtype=np.float64)),
            "mean": float(np.mean(data, dtype=np.float64)) if data.size else math.nan,
            "std": float(np.std(data, dtype=np.float64)) if data.size else math.nan,
            "count": int(data.size),
        }


@settings(max_examples=150, deadline=None)
@given(
    x=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=9),
        elements=st.floats(-1e6, 1e6) | st.just(np.nan),
    ),
    nranks=st.integers(1, 4),
    budget=st.integers(1, 20),
    skipna=st.booleans(),
)
def test_reduce_partials_match_numpy(x, nranks, budget, skipna) -> None:
    kernel = Reduce(op=["min", "max", "sum", "mean", "std", "count"], skipna=skipna)
    per_rank = []
    for r in range(nranks):
        part = Partial()
        for index in steps(slab(x.shape, r, nranks), 8, budget * 8):
            part = part.combine(kernel.partial(x[index]))
        per_rank.append(part)
    got = kernel.finish(combine_all(per_rank), x.dtype)
    want = numpy_stats(x, skipna, 10)
    scale = float(np.nansum(np.abs(x))) + 1.0
    for op in ("min", "max", "count"):
        assert got[op] == want[op] or (math.isnan(got[op]) and math.isnan(want[op])), op
    for op in ("sum", "mean", "std"):
        if math.isnan(want[op]):
            assert math.isnan(got[op]), op
        else:
            assert abs(got[op] - want[op]) <= 1e-12 * scale, (op, got[op], want[op])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("skipna", [False, True])
def test_reduce_of_a_block_larger_than_a_piece_matches_numpy(dtype, skipna) -> None:
    from h5par.kernels.reduce import PIECE

    x = np.random.default_rng(3).normal(5.0, 2.0, size=(3 * PIECE // 700 + 1, 700)).astype(dtype)
    x[::97, ::13] = np.nan if skipna else x[::97, ::13]
    assert x.size > 3 * PIECE
    ops = ["min", "max", "sum", "mean", "std", "count", "histogram"]
    kernel = Reduce(op=ops, skipna=skipna, bins=17).with_range(np.nanmin(x), np.nanmax(x))
    got = kernel.finish(kernel.partial(x, Scratch()), x.dtype)
    want = numpy_stats(x, skipna, 17)
    data = x[~np.isnan(x)] if skipna else x
    scale = float(np.sum(np.abs(data), dtype=np.float64))
    for op in ("min", "max", "count"):
        assert got[op] == want[op], op
    for op in ("sum", "mean", "std"):
        assert abs(got[op] - want[op]) <= 1e-12 * scale, (op, got[op], want[op])
    counts, edges = np.histogram(data, bins=17)
    assert got["histogram"]["counts"] == counts.tolist()
    assert got["histogram"]["edges"] == edges.tolist()


def test_histogram_with_global_range_is_bitwise_numpy() -> None:
    x = np.random.default_rng(1).normal(size=1001).astype(np.float32)
    kernel = Reduce(op="histogram", bins=13).with_range(x.min(), x.max())
    parts = [kernel.partial(x[a : a + 100]) for a in range(0, x.size, 100)]
    got = kernel.finish(combine_all(parts), x.dtype)["histogram"]
    counts, edges = np.histogram(x, bins=13)
    assert got["counts"] == counts.tolist() and got["edges"] == edges.tolist()


def test_unknown_kernel_and_parameter_list_valid_choices() -> None:
    with pytest.raises(
        UsageError, match=r"unknown kernel 'clamp' \(valid: abs, astype, broadcast, clip"
    ):
        Chain.from_specs([{"name": "clamp"}])
    with pytest.raises(
        UsageError,
        match=r"kernel #2: kernel 'clip': unknown parameter 'minimum' \(valid: min, max\)",
    ):
        Chain.from_specs([{"name": "abs"}, {"name": "clip", "minimum": 0}])
    with pytest.raises(UsageError, match="missing required parameter 'dtype'"):
        Chain.from_specs([{"name": "astype"}])
    with pytest.raises(UsageError, match="cannot process dtype"):
        Chain.from_specs([{"name": "clip", "min": 0}]).check(np.dtype("S10"), (3,))


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "x.__class__",
        "[x]",
        "lambda: 1",
        "open('f')",
        "x if x else 1",
        "'a'",
        "y + 1",
    ],
)
def test_expression_language_rejects_everything_else(text) -> None:
    with pytest.raises(UsageError, match="expression"):
        make_kernel({"name": "where", "condition": text, "value": "0"})


def test_expression_language_semantics() -> None:
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0, np.nan])
    kernel = make_kernel(
        {"name": "where", "condition": "(abs(x) > 1) | isnan(x)", "value": "x / 2 + 1"}
    )
    out = kernel(x, (slice(0, 6),))
    mask = (np.abs(x) > 1) | np.isnan(x)
    expected = x.copy()
    expected[mask] = (x / 2 + 1)[mask]
    assert same_bits(out, expected)
    chained = make_kernel({"name": "where", "condition": "-1 < x < 1", "value": "0"})
    assert chained(x, (slice(0, 6),)).tolist()[:5] == [-2.0, 0.0, 0.0, 0.0, 2.0]


def test_python_kernel_checks_shape_and_dtype() -> None:
    kernel = make_kernel({"name": "python", "function": "numpy:negative"})
    x = np.arange(4.0)
    assert same_bits(kernel(x, (slice(0, 4),)), -x)
    bad = make_kernel({"name": "python", "function": "numpy:sum"})
    with pytest.raises(KernelError, match="returned shape"):
        bad(x, (slice(0, 4),))
    with pytest.raises(UsageError, match="cannot import 'no_such_module'"):
        make_kernel({"name": "python", "function": "no_such_module:f"})


def test_step_shapes_used_by_tests_are_nonempty() -> None:
    cut = steps(slab((5, 3), 0, 2), 8, 16)
    assert [index_shape(s) for s in cut] == [(1, 2), (1, 1), (1, 2), (1, 1), (1, 2), (1, 1)]
