"""Series jobs without MPI (issue 20): validation of the keys, which datasets are joined,
the joined file's name, and the joined arrays' arithmetic against numpy."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from h5par.core.series import Joined, natural_key
from h5par.engine.jobs import job_from_dict
from h5par.engine.series import digest, joined_file
from h5par.errors import UsageError
from h5par.hdf5.series import survey, write_joined


@pytest.fixture
def files(tmp_path) -> list[Path]:
    paths = []
    for k, n in enumerate((2, 3)):
        path = tmp_path / f"d{k}.h5"
        with h5py.File(path, "w") as f:
            f["x"] = np.arange(n * 4.0).reshape(n, 4) + 100 * k
            f["grid"] = np.ones((5, 4))  # has axis 0, not unlimited
            f["c"] = 3.0
        paths.append(path)
    return paths


def job(tmp_path: Path, inp: dict, out: dict | None = None, **extra) -> object:
    table = {"input": {"path": "d*.h5", **inp}, "output": out or {"path": "s.h5"}, **extra}
    return job_from_dict(table, base=tmp_path)


@pytest.mark.parametrize(
    ("inp", "out", "extra", "message"),
    [
        ({"combine": "join"}, None, {}, r"input.combine = 'join' \(valid: concat, stack\)"),
        ({"axis": 1}, None, {}, r"input.axis needs input.combine"),
        ({"order_by": "/t"}, None, {}, r"input.order_by needs input.combine"),
        ({"combine": "stack", "axis": 0}, None, {}, r"input.axis applies to combine = 'concat'"),
        ({"combine": "concat", "axis": -1}, None, {}, r"input.axis = -1 \(valid: an axis number"),
        (
            {"combine": "concat", "order_by": "/"},
            None,
            {},
            r"input.order_by = '/' \(valid: the path",
        ),
        ({"combine": "concat"}, {"in_place": True}, {}, r"give output.path, not in_place"),
        ({"combine": "concat"}, {"path": "{stem}.h5"}, {}, r"a series makes one file"),
        ({"combine": "concat"}, {"path": "d1.h5"}, {}, r"would overwrite an input of the series"),
        ({}, {"path": "x.h5", "layout": "virtual"}, {}, r"'virtual' needs input.combine"),
        (
            {"combine": "concat"},
            {"path": "v.h5", "layout": "virtual"},
            {"kernels": [{"name": "clip", "min": 0}]},
            r"'virtual' maps the inputs: it cannot apply kernels",
        ),
    ],
)
def test_bad_series_tables_are_refused_naming_the_key(files, inp, out, extra, message) -> None:
    with pytest.raises(UsageError, match=message):
        job(files[0].parent, inp, out, **extra)


def test_a_series_is_one_file_named_by_its_inputs(files) -> None:
    folder = files[0].parent
    first = job(folder, {"combine": "concat"})
    (only,) = first.files
    assert only.output == folder / "s.h5" and only.input.parent == folder
    assert only.input.name.startswith(".s.h5.h5par-series-")
    assert first.series.sources == tuple(files)
    before = digest(first.series)
    with h5py.File(files[1], "a") as f:  # a changed file: another joined file
        f["y"] = 1
    os.utime(files[1], ns=(1, 2))
    assert digest(job(folder, {"combine": "concat"}).series) != before
    assert joined_file(first.series, folder / "s.h5") != only.input


def test_without_unlimited_axes_every_dataset_with_the_axis_is_joined(files, tmp_path) -> None:
    every = survey(files, "concat", 0, None, None)  # plain HDF5: what has axis 0 is joined
    assert {p: j.shape for p, j in every.joined.items()} == {"/x": (5, 4), "/grid": (10, 4)}
    found = survey(files, "concat", 0, ["/x"], None)
    assert list(found.joined) == ["/x"] and found.joined["/x"].shape == (5, 4)
    write_joined(found, tmp_path / "j.h5")
    with h5py.File(tmp_path / "j.h5") as f:
        want = np.concatenate([h5py.File(p)["x"][...] for p in files])
        assert f["x"].is_virtual and f["x"][...].tobytes() == want.tobytes()
        assert not f["grid"].is_virtual and f["c"][()] == 3.0  # the first file's
    assert sorted(p.name for p in tmp_path.iterdir() if "j.h5" in p.name) == ["j.h5"]


def test_a_dataset_without_the_axis_named_for_concat_is_refused(files) -> None:
    with pytest.raises(UsageError, match=r"dataset /c has shape \(\), no axis 0 to join along"):
        survey(files, "concat", 0, ["/c"], None)


def test_names_sort_by_their_numbers() -> None:
    names = ["run10/s_2.h5", "run9/s_10.h5", "run9/s_9.h5", "run10/s_1.h5"]
    assert sorted(names, key=natural_key) == [
        "run9/s_9.h5",
        "run9/s_10.h5",
        "run10/s_1.h5",
        "run10/s_2.h5",
    ]


@given(
    lengths=st.lists(st.integers(0, 4), min_size=1, max_size=5),
    axis=st.integers(0, 1),
)
def test_parts_tile_the_joined_array_like_numpy(lengths, axis) -> None:
    shapes = [(n, 3) if axis == 0 else (3, n) for n in lengths]
    arrays = [np.full(s, k) for k, s in enumerate(shapes)]
    joined = Joined("concat", axis, tuple(shapes))
    whole = np.concatenate(arrays, axis=axis)
    assert joined.shape == whole.shape
    for k, array in enumerate(arrays):
        assert np.array_equal(whole[joined.part(k)], array)
    stacked = Joined("stack", 0, tuple([(2, 3)] * len(lengths)))
    assert stacked.shape == (len(lengths), 2, 3) and stacked.starts == list(range(len(lengths) + 1))
