"""Neighbourhood kernels and reductions along axes, blockwise, against scipy/numpy (no MPI).

The runner's path is simulated in pure numpy: units from the decomposition, each extended by
its halo (h5par.core.halo) and read from the whole array as the runner reads the file.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import ndimage

from h5par import UsageError
from h5par.core.decomposition import steps
from h5par.core.halo import extend
from h5par.kernels import Chain
from h5par.kernels.axes import finish

MODES = ["reflect", "nearest", "constant", "wrap"]


def blockwise(chain: Chain, x: np.ndarray, unit_bytes: int) -> np.ndarray:
    """Run ``chain`` unit by unit as the runner does, each unit read with its halo."""
    dtype, shape = chain.check(x.dtype, x.shape)
    out = np.empty(shape, dtype)
    halo = chain.halo(x.ndim)
    assert halo is not None
    for index in steps(tuple(slice(0, n) for n in x.shape), 8, unit_bytes):
        extended = extend(index, x.shape, *halo)
        sources = [np.concatenate([np.arange(a, b) for a, b in r]) for r in extended.runs()]
        grid = x[np.ix_(*sources)]  # what the runner reads: the product of the runs
        for axis, taken in enumerate(extended.positions()):
            if taken is not None:
                grid = np.take(grid, taken, axis=axis)
        out[index] = chain.apply(grid, index, None, extended.core)[0]
    return out


shapes = st.lists(st.integers(1, 9), min_size=1, max_size=3).map(tuple)


@given(
    shape=shapes,
    size=st.integers(1, 12),
    mode=st.sampled_from(MODES),
    unit=st.sampled_from([8, 40, 200, 1 << 20]),
    seed=st.integers(0, 2**16),
)
def test_box_smoothing_blockwise_is_bitwise_scipy(shape, size, mode, unit, seed) -> None:
    x = np.random.default_rng(seed).normal(size=shape)
    chain = Chain.from_specs([{"name": "smooth", "size": size, "mode": mode, "cval": 0.25}])
    want = x
    for axis in range(x.ndim):
        want = ndimage.correlate1d(want, np.full(size, 1.0 / size), axis, mode=mode, cval=0.25)
    assert blockwise(chain, x, unit).tobytes() == want.tobytes()


@given(
    shape=shapes,
    sigma=st.floats(0.3, 4.0),
    mode=st.sampled_from(MODES),
    unit=st.sampled_from([8, 64, 1 << 20]),
    seed=st.integers(0, 2**16),
)
def test_gaussian_smoothing_along_the_last_axis_is_bitwise_scipy(
    shape, sigma, mode, unit, seed
) -> None:
    x = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    spec = {"name": "smooth", "method": "gaussian", "sigma": sigma, "mode": mode, "axis": -1}
    want = ndimage.gaussian_filter1d(x, sigma, -1, mode=mode)
    got = blockwise(Chain.from_specs([spec]), x, unit)
    assert got.dtype == np.float32 and got.tobytes() == want.tobytes()


@given(
    shape=shapes,
    window=st.integers(1, 10),
    mode=st.sampled_from(MODES),
    unit=st.sampled_from([8, 48, 1 << 20]),
    seed=st.integers(0, 2**16),
)
def test_moving_mean_after_clip_is_bitwise_scipy(shape, window, mode, unit, seed) -> None:
    x = np.random.default_rng(seed).integers(-50, 50, size=shape).astype(np.int16)
    chain = Chain.from_specs(
        [{"name": "clip", "min": 0}, {"name": "moving_mean", "window": window, "mode": mode}]
    )
    clipped = np.clip(x, 0, None).astype(np.float64)  # integers are averaged as float64
    want = ndimage.correlate1d(clipped, np.full(window, 1.0 / window), 0, mode=mode)
    assert blockwise(chain, x, unit).tobytes() == want.tobytes()


@given(
    shape=shapes,
    edge_order=st.sampled_from([1, 2]),
    unit=st.sampled_from([8, 24, 1 << 20]),
    seed=st.integers(0, 2**16),
    spacing=st.sampled_from([1.0, 0.5, 3.0]),
)
def test_gradient_blockwise_is_bitwise_numpy(shape, edge_order, unit, seed, spacing) -> None:
    x = np.random.default_rng(seed).normal(size=shape)
    axis = len(shape) - 1
    if shape[axis] < edge_order + 1:
        with pytest.raises(UsageError, match="too few for edge_order"):
            Chain.from_specs([{"name": "gradient", "axis": axis, "edge_order": edge_order}]).check(
                x.dtype, x.shape
            )
        return
    spec = {"name": "gradient", "axis": axis, "edge_order": edge_order, "spacing": spacing}
    want = np.gradient(x, spacing, axis=axis, edge_order=edge_order)
    assert blockwise(Chain.from_specs([spec]), x, unit).tobytes() == want.tobytes()


def test_python_kernel_with_a_halo_equals_the_function_on_the_whole_array() -> None:
    x = np.random.default_rng(5).normal(size=(17, 6))
    chain = Chain.from_specs([{"name": "python", "function": "scipy.ndimage:laplace", "halo": 1}])
    assert blockwise(chain, x, 48).tobytes() == ndimage.laplace(x).tobytes()
    periodic = Chain.from_specs(
        [{"name": "python", "function": "scipy.ndimage:laplace", "halo": 1, "periodic": True}]
    )
    want = ndimage.laplace(x, mode="wrap")  # every neighbour is real data: no edge padding
    assert blockwise(periodic, x, 48).tobytes() == want.tobytes()


def _pieces(x: np.ndarray, axes: tuple[int, ...], unit: int) -> list[tuple[slice, ...]]:
    reduced = tuple(slice(0, x.shape[a]) for a in axes)
    return steps(reduced, 8, unit) or [reduced]


def _full(x: np.ndarray, axes: tuple[int, ...], piece: tuple[slice, ...]) -> tuple[slice, ...]:
    it = iter(piece)
    return tuple(next(it) if a in axes else slice(None) for a in range(x.ndim))


@given(
    shape=st.lists(st.integers(1, 7), min_size=1, max_size=3).map(tuple),
    data=st.data(),
    op=st.sampled_from(["min", "max", "sum", "mean", "std", "count"]),
    skipna=st.booleans(),
    unit=st.sampled_from([8, 40, 1 << 20]),
    seed=st.integers(0, 2**16),
)
def test_reduction_along_axes_in_pieces_matches_numpy(shape, data, op, skipna, unit, seed) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    x[rng.random(shape) < 0.2] = np.nan
    axes = tuple(sorted(data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))))
    spec = {"name": "reduce", "op": op, "axis": list(axes), "skipna": skipna, "ddof": 0}
    chain = Chain.from_specs([spec])
    reducer = chain.axis_reducer
    assert reducer is not None
    total = None
    for piece in _pieces(x, axes, unit):
        box = _full(x, axes, piece)
        part, _ = chain.reduce_axes(x[box], box)
        total = part if total is None else total.combine(part, op)
    assert total is not None
    got = finish(total, op, 0, x.dtype)
    with warnings.catch_warnings():  # numpy warns about all-NaN slices
        warnings.simplefilter("ignore")
        if op == "count":
            counted = ~np.isnan(x) if skipna else np.ones(shape, bool)
            want = np.sum(counted, axis=axes)
        else:
            want = getattr(np, f"nan{op}" if skipna else op)(x, axis=axes)
    assert got.shape == np.shape(want)
    if op in ("min", "max", "count"):
        np.testing.assert_array_equal(got, want)
    else:
        tolerance = 1e-12 * (np.nansum(np.abs(x), axis=axes) + 1)
        close = np.abs(got - want) <= tolerance
        assert np.all(close | (np.isnan(got) & np.isnan(want)))


def test_missing_values_are_left_out_and_empty_cells_get_the_fill_value() -> None:
    x = np.array([[1.0, -9999.0], [3.0, -9999.0], [-9999.0, -9999.0]])
    chain = Chain.from_specs([{"name": "reduce", "op": "mean", "axis": 0}])
    part, _ = chain.reduce_axes(x, (slice(0, 3), slice(0, 2)), fill=-9999.0)
    assert finish(part, "mean", 0, x.dtype, -9999.0).tolist() == [2.0, -9999.0]


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([{"name": "smooth", "size": 3, "mode": "mirror"}], "mode = 'mirror' (valid: reflect"),
        ([{"name": "smooth", "sigma": 1.0}], "method = 'box' takes size"),
        ([{"name": "smooth", "method": "median", "size": 3}], "valid: box, gaussian"),
        ([{"name": "smooth", "method": "gaussian", "sigma": -1.0}], "sigma = -1.0 (valid: > 0)"),
        ([{"name": "smooth", "size": 0}], "size = 0 (valid: an integer >= 1)"),
        (
            [{"name": "moving_mean", "window": 3, "axis": [0, 1]}],
            "axis = [0, 1] (valid: an integer)",
        ),
        ([{"name": "gradient"}], "missing required parameter 'axis'"),
        ([{"name": "gradient", "axis": 0, "edge_order": 3}], "edge_order = 3 (valid: 1, 2)"),
        ([{"name": "python", "function": "numpy:negative", "halo": -1}], "halo = -1"),
        ([{"name": "reduce", "op": ["min", "max"], "axis": 0}], "with axis (valid: one of"),
        ([{"name": "reduce", "op": "histogram", "axis": 0}], "with axis (valid: one of"),
        (
            [{"name": "reduce", "op": "mean", "axis": 0}, {"name": "abs"}],
            "a reduction along axes ends the chain",
        ),
        (
            [{"name": "smooth", "size": 3}, {"name": "gradient", "axis": 0}],
            "cannot follow 'reshape', 'broadcast' or another kernel with neighbours",
        ),
        (
            [{"name": "broadcast"}, {"name": "smooth", "size": 3}],
            "cannot follow 'reshape', 'broadcast'",
        ),
        (
            [{"name": "smooth", "size": 3}, {"name": "reshape", "shape": [-1]}],
            "cannot follow a kernel with neighbours",
        ),
    ],
)
def test_bad_parameters_name_the_value_and_the_choices(specs, message) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        Chain.from_specs(specs)


@pytest.mark.parametrize(
    ("spec", "shape", "message"),
    [
        (
            {"name": "smooth", "size": 3, "axis": 2},
            (4, 5),
            "axis = 2 does not exist in a 2-d dataset",
        ),
        ({"name": "reduce", "op": "mean", "axis": [0, 0]}, (4, 5), "names an axis twice"),
        ({"name": "reduce", "op": "min", "axis": 0}, (0, 5), "reduces zero elements"),
        (
            {"name": "python", "function": "numpy:negative", "halo": [1]},
            (4, 5),
            "has 1 entries for a 2-d",
        ),
    ],
)
def test_parameters_that_do_not_fit_the_dataset(spec, shape, message) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        Chain.from_specs([spec]).check(np.dtype("f8"), shape)


def test_output_shapes_and_dtypes() -> None:
    check = Chain.from_specs
    assert check([{"name": "reduce", "op": "mean", "axis": 0}]).check(
        np.dtype("f4"), (5, 4, 3)
    ) == (np.dtype("f8"), (4, 3))
    assert check([{"name": "reduce", "op": "max", "axis": [0, 2]}]).check(
        np.dtype("i2"), (5, 4, 3)
    ) == (np.dtype("i2"), (4,))
    assert check([{"name": "reduce", "op": "count", "axis": [0, 1]}]).check(
        np.dtype("f4"), (5, 4)
    ) == (np.dtype("i8"), ())
    assert check([{"name": "smooth", "size": 3}]).check(np.dtype("u1"), (5,)) == (
        np.dtype("f8"),
        (5,),
    )
    assert check([{"name": "gradient", "axis": 0}]).check(np.dtype("f4"), (5,)) == (
        np.dtype("f4"),
        (5,),
    )
