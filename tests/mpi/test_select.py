"""Selections (the book's dset[4:8:2], dset[0, ..., 0], dset[[1, 2, 7]]) at 1-4 ranks."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from mpi4py import MPI

import h5par
from h5par import H5ParError, UsageError

pytestmark = pytest.mark.mpi(min_size=1)

comm = MPI.COMM_WORLD
DATA = np.random.default_rng(11).normal(size=(37, 23, 9))
SELECTIONS = {
    "4:8:2": DATA[4:8:2],
    "0, ..., 0": DATA[0, ..., 0],
    "[1, 2, 7]": DATA[[1, 2, 7]],
    "::3, [0, 1, 2, 5, 9, 22], 2:9:3": DATA[::3, [0, 1, 2, 5, 9, 22], 2:9:3],
    "-1, 5:": DATA[-1, 5:],
    "1:36:5, :, -2": DATA[1:36:5, :, -2],
    "...": DATA,
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    path = str(tmp_path_factory.mktemp("select")) if comm.rank == 0 else None
    folder = Path(comm.bcast(path))
    if comm.rank == 0:
        with h5py.File(folder / "in.h5", "w") as f:
            f["plain"] = DATA
            f.create_dataset("packed", data=DATA, chunks=(5, 4, 9), compression="gzip")
            f["plain"].attrs["units"] = "K"
            f["scalar"] = 2.5
    comm.Barrier()
    return folder


@pytest.mark.parametrize("text", sorted(SELECTIONS))
@pytest.mark.parametrize("name", ["plain", "packed"])
@pytest.mark.parametrize("memory", ["1KiB", "256MiB"])
def test_selection_then_kernels_equals_numpy(folder, text, name, memory) -> None:
    out = folder / f"out_{comm.size}.h5"
    result = h5par.apply(
        folder / "in.h5",
        out,
        [{"name": "scale", "factor": 3.0, "offset": -1.0}],
        datasets=[f"/{name}"],
        select={f"/{name}": text},
        memory=memory,
        overwrite=True,
    )
    assert result.datasets == [f"/{name}"]
    if memory == "1KiB" and SELECTIONS[text].size > 200 and name == "plain":
        assert max(r["steps"] for r in result.decomposition[f"/{name}"]) > 1
    # (a chunked output's units are whole chunks, even when one exceeds the budget)
    if comm.rank == 0:
        with h5py.File(out, "r") as f:
            got = f[name][...]
            want = SELECTIONS[text] * 3.0 - 1.0
            assert got.shape == want.shape and got.tobytes() == want.tobytes()
            assert dict(f["plain"].attrs) == {"units": "K"}
    comm.Barrier()


def test_scalar_selection_and_the_books_errors(folder) -> None:
    out = folder / f"scalar_{comm.size}.h5"
    h5par.apply(
        folder / "in.h5", out, [], datasets=["/scalar"], select={"/scalar": "()"}, overwrite=True
    )
    if comm.rank == 0:
        with h5py.File(out, "r") as f:
            assert f["scalar"][()] == 2.5
    cases = {
        ("/scalar", "0"): "Illegal slicing argument for scalar dataspace",
        ("/plain", "::-1"): "Step must be >= 1 (got -1)",
        ("/plain", "::0"): "Step must be >= 1 (got 0)",
        ("/plain", "40"): "index 40 is out of range for axis 0 of length 37",
        ("/plain", "[7, 2]"): "must be in increasing order",
        ("/plain", "3:3"): "axis 0 of length 37 would be empty: 3:3 selects no element",
        ("/plain", "0, 30:40"): "axis 1 of length 23 would be empty: 30:40 selects no element",
        ("/plain", "..., []"): "axis 2 of length 9 would be empty: [] selects no element",
        ("/plain", "x + 1"): "expected integers, slices",
        ("/nothing", "1"): "select '/nothing' matches no processed dataset",
    }
    for (path, text), message in cases.items():
        with pytest.raises(UsageError, match=re.escape(message)):
            h5par.apply(
                folder / "in.h5",
                out,
                [],
                datasets=["/plain", "/scalar"],
                select={path: text},
                overwrite=True,
            )
    with pytest.raises(H5ParError, match="in-place runs cannot apply a selection"):
        h5par.apply(
            folder / "in.h5", in_place=True, kernels=[{"name": "abs"}], select={"/plain": "1"}
        )


def test_dimension_scales_stay_whole_or_follow_the_selection(folder) -> None:
    """Whole axes keep their scale, a sliced one gets a scale of the selection (``/time_1``:
    ``/other`` still uses ``/time`` whole), an indexed one none (issue 22, item 1)."""
    path, out = folder / f"dims_{comm.size}.h5", folder / f"dims_out_{comm.size}.h5"
    if comm.rank == 0:
        with h5py.File(path, "w") as f:
            for name, n in (("time", 10), ("y", 6), ("x", 4)):
                f[name] = np.arange(float(n))
                f[name].make_scale(name)
            field = f.create_dataset("field", data=DATA[:10, :6, :4])
            other = f.create_dataset("other", data=DATA[:10, :6, 0])
            for k, name in enumerate(("time", "y", "x")):
                field.dims[k].attach_scale(f[name])
            other.dims[0].attach_scale(f["time"])
    comm.Barrier()
    h5par.apply(path, out, [], datasets=["/field"], select={"/field": "::2, :, 1"})
    if comm.rank == 0:
        with h5py.File(out, "r") as f:
            field = f["field"]
            assert field[...].tobytes() == DATA[:10:2, :6, 1].tobytes()
            names = [[s.name for s in field.dims[k].values()] for k in range(2)]
            assert names == [["/time_1"], ["/y"]]
            assert f["time_1"][...].tobytes() == np.arange(10.0)[::2].tobytes()
            assert [f[r[0]].name for r in f["time"].attrs["REFERENCE_LIST"]] == ["/other"]
            assert [(f[r[0]].name, int(r[1])) for r in f["time_1"].attrs["REFERENCE_LIST"]] == [
                ("/field", 0)
            ]
            assert [(f[r[0]].name, int(r[1])) for r in f["y"].attrs["REFERENCE_LIST"]] == [
                ("/field", 1)
            ]
            assert "REFERENCE_LIST" not in f["x"].attrs
            assert [s.name for s in f["other"].dims[0].values()] == ["/time"]
    comm.Barrier()
