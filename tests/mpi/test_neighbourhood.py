"""Reductions along axes and neighbourhood kernels through h5par.apply at 1-4 ranks.

Each result is compared with numpy/scipy on the whole array: bitwise for min, max, count,
smoothing and gradients; within 1e-12 x sum|x| for sums, means and standard deviations.
Small budgets force many steps per rank and halos across rank boundaries; a (3, 5)
dataset leaves ranks without data.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from mpi4py import MPI
from scipy import ndimage

import h5par
from h5par import H5ParError, UsageError

pytestmark = pytest.mark.mpi(min_size=1)

comm = MPI.COMM_WORLD
DATA = np.random.default_rng(23).normal(size=(37, 23, 9))
DATA[np.random.default_rng(24).random(DATA.shape) < 0.05] = np.nan
SMALL = np.arange(15.0).reshape(3, 5)


def _box(x: np.ndarray, size: int, mode: str, axes: tuple[int, ...]) -> np.ndarray:
    for axis in axes:
        x = ndimage.correlate1d(x, np.full(size, 1.0 / size), axis, mode=mode, cval=-1.0)
    return x


def _quiet(function: Callable[..., Any]) -> Callable[..., Any]:
    def call(x: np.ndarray) -> Any:
        with warnings.catch_warnings():  # all-NaN slices
            warnings.simplefilter("ignore")
            return function(x)

    return call


EXACT, SUMS = 0.0, 1e-12
# name: (kernels, reference on the whole array, tolerance)
CASES: dict[str, tuple[list[dict[str, Any]], Callable[[np.ndarray], Any], float]] = {
    "time-mean": ([{"name": "reduce", "op": "mean", "axis": 0}], lambda x: np.mean(x, 0), SUMS),
    "profile-std": (
        [{"name": "reduce", "op": "std", "axis": [0, -1], "skipna": True, "ddof": 1}],
        _quiet(lambda x: np.nanstd(x, (0, x.ndim - 1), ddof=1)),
        SUMS,
    ),
    "nansum": (
        [{"name": "reduce", "op": "sum", "axis": 1, "skipna": True}],
        lambda x: np.nansum(x, 1),
        SUMS,
    ),
    "nanmin": (
        [{"name": "reduce", "op": "min", "axis": 0, "skipna": True}],
        _quiet(lambda x: np.nanmin(x, 0)),
        EXACT,
    ),
    "max-last-axis": (
        [{"name": "reduce", "op": "max", "axis": list(range(-1, 0))}],
        lambda x: np.max(x, -1),
        EXACT,
    ),
    "count": (
        [{"name": "reduce", "op": "count", "axis": 0, "skipna": True}],
        lambda x: np.sum(~np.isnan(x), 0),
        EXACT,
    ),
    "box-wrap": (
        [{"name": "fill", "value": 0.5}, {"name": "smooth", "size": 4, "mode": "wrap"}],
        lambda x: _box(np.where(np.isnan(x), 0.5, x), 4, "wrap", tuple(range(x.ndim))),
        EXACT,
    ),
    "box-constant": (
        [{"name": "smooth", "size": 3, "mode": "constant", "cval": -1.0, "axis": [0, -1]}],
        lambda x: _box(x, 3, "constant", (0, x.ndim - 1)),
        EXACT,
    ),
    "gaussian": (
        [{"name": "smooth", "method": "gaussian", "sigma": 1.5, "axis": 0, "mode": "nearest"}],
        lambda x: ndimage.gaussian_filter1d(x, 1.5, 0, mode="nearest"),
        EXACT,
    ),
    "moving-mean": (
        [{"name": "moving_mean", "window": 6, "axis": -1}],
        lambda x: ndimage.correlate1d(x, np.full(6, 1 / 6), -1, mode="reflect"),
        EXACT,
    ),
    "gradient": (
        [{"name": "gradient", "axis": 0, "edge_order": 2, "spacing": 0.5}],
        lambda x: np.gradient(x, 0.5, axis=0, edge_order=2),
        EXACT,
    ),
    "smooth-then-mean": (
        [
            {"name": "fill", "value": 0.0},
            {"name": "smooth", "method": "gaussian", "sigma": 2.0, "axis": 0},
            {"name": "reduce", "op": "mean", "axis": 0},
        ],
        lambda x: np.mean(ndimage.gaussian_filter1d(np.nan_to_num(x), 2.0, 0), 0),
        SUMS,
    ),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    path = str(tmp_path_factory.mktemp("neighbourhood")) if comm.rank == 0 else None
    folder = Path(comm.bcast(path))
    if comm.rank == 0:
        with h5py.File(folder / "in.h5", "w") as f:
            f["plain"] = DATA
            f.create_dataset("packed", data=DATA, chunks=(5, 4, 9), compression="gzip")
            f["small"] = SMALL
            f["plain"].attrs["units"] = "K"
    comm.Barrier()
    return folder


def _check(got: np.ndarray, want: Any, tolerance: float, x: np.ndarray) -> None:
    want = np.asarray(want)
    assert got.shape == want.shape
    if tolerance == EXACT:
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    else:
        bound = tolerance * np.nansum(np.abs(x))
        assert np.all((np.abs(got - want) <= bound) | (np.isnan(got) & np.isnan(want)))


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", ["plain", "packed", "small"])
@pytest.mark.parametrize("memory", ["4KiB", "256MiB"])
def test_result_equals_the_reference_on_the_whole_array(folder, case, name, memory) -> None:
    kernels, reference, tolerance = CASES[case]
    out = folder / f"out_{comm.size}.h5"
    result = h5par.apply(
        folder / "in.h5", out, kernels, datasets=[f"/{name}"], memory=memory, overwrite=True
    )
    steps = [r["steps"] for r in result.decomposition[f"/{name}"]]
    if memory == "4KiB" and name != "small" and comm.size == 1:
        assert steps[0] > 1  # several units: halos and pieces cross unit boundaries
    if name == "small" and comm.size > 1:
        assert 0 in steps  # a rank with no data still takes part
    if comm.rank == 0:
        x = DATA if name != "small" else SMALL
        with h5py.File(out, "r") as f:
            _check(f[name][...], reference(x), tolerance, x)
            assert dict(f["plain"].attrs) == {"units": "K"}
    comm.Barrier()


def test_beyond_toy_scale_time_mean_and_smoothing(folder) -> None:
    path, out = folder / "big.h5", folder / f"big_out_{comm.size}.h5"
    field = np.random.default_rng(3).normal(size=(96, 128, 128)).astype(np.float32)  # 6 MiB
    if comm.rank == 0:
        with h5py.File(path, "w") as f:
            f["mean"] = field
            f["smooth"] = field
    comm.Barrier()
    smooth = [{"name": "smooth", "method": "gaussian", "sigma": 3.0, "axis": [1, 2]}]
    h5par.apply(path, out, smooth, "/smooth", memory="1MiB", overwrite=True)
    if comm.rank == 0:
        with h5py.File(out, "r") as f:
            want = ndimage.gaussian_filter1d(ndimage.gaussian_filter1d(field, 3.0, 1), 3.0, 2)
            assert f["smooth"][...].tobytes() == want.tobytes()
    comm.Barrier()
    mean = [{"name": "reduce", "op": "mean", "axis": 0}]
    h5par.apply(path, out, mean, "/mean", memory="1MiB", overwrite=True)
    if comm.rank == 0:
        with h5py.File(out, "r") as f:
            want = np.mean(field.astype(np.float64), 0)
            assert np.all(np.abs(f["mean"][...] - want) <= 1e-12 * np.abs(field).sum())
    comm.Barrier()


def test_selection_then_smoothing_then_time_mean(folder) -> None:
    out = folder / f"select_{comm.size}.h5"
    kernels = [
        {"name": "fill", "value": 0.0},
        {"name": "smooth", "size": 3, "mode": "wrap", "axis": [0, 1]},
        {"name": "reduce", "op": "max", "axis": 0},
    ]
    h5par.apply(
        folder / "in.h5",
        out,
        kernels,
        "/packed",
        select={"/packed": "1::3, [0, 2, 3, 9, 22], 4"},
        memory="2KiB",
    )
    if comm.rank == 0:
        x = np.nan_to_num(DATA[1::3, [0, 2, 3, 9, 22], 4])
        want = np.max(_box(x, 3, "wrap", (0, 1)), 0)
        with h5py.File(out, "r") as f:
            assert f["packed"][...].tobytes() == want.tobytes()
    comm.Barrier()


def test_time_mean_keeps_attributes_scales_and_missing_values(folder) -> None:
    path, out = folder / f"cf_{comm.size}.h5", folder / f"cf_out_{comm.size}.h5"
    field = np.where(np.isnan(DATA[:10, :6, :4]), -9999.0, DATA[:10, :6, :4])
    field[:, 0, 0] = -9999.0  # missing at every time: the mean is missing too
    if comm.rank == 0:
        with h5py.File(path, "w") as f:
            for name, n in (("time", 10), ("y", 6), ("x", 4)):
                f[name] = np.arange(float(n))
                f[name].make_scale(name)
            dset = f.create_dataset("field", data=field)
            dset.attrs["_FillValue"] = -9999.0
            dset.attrs["units"] = "K"
            for k, name in enumerate(("time", "y", "x")):
                dset.dims[k].attach_scale(f[name])
    comm.Barrier()
    h5par.apply(path, out, [{"name": "reduce", "op": "mean", "axis": 0}], "/field", memory="1KiB")
    if comm.rank == 0:
        with h5py.File(out, "r") as f:
            got = f["field"]
            masked = np.ma.masked_equal(field, -9999.0).mean(axis=0).filled(-9999.0)
            assert np.allclose(got[...], masked, rtol=0, atol=1e-12) and got[0, 0] == -9999.0
            assert got.attrs["units"] == "K" and got.attrs["_FillValue"] == -9999.0
            assert [[s.name for s in got.dims[k].values()] for k in range(2)] == [["/y"], ["/x"]]
            assert "REFERENCE_LIST" not in f["time"].attrs
    comm.Barrier()
    with pytest.raises(UsageError, match=re.escape("has missing values (_FillValue = -9999.0)")):
        h5par.apply(path, out, [{"name": "smooth", "size": 3}], "/field", overwrite=True)


def test_in_place_neighbourhood_kernels_are_refused(folder) -> None:
    with pytest.raises(H5ParError, match="in-place runs cannot use kernels with neighbours"):
        h5par.apply(folder / "in.h5", in_place=True, kernels=[{"name": "smooth", "size": 3}])
