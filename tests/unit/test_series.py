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
from h5par.engine.series import digest, joined_file, prepare, remove_joined
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
        (
            {"combine": "concat", "path": ["d1.h5"]},
            {"path": "d1.h5"},
            {},
            r"would overwrite an input",
        ),
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


def test_percent_signs_in_file_and_dataset_names_are_read_as_themselves(tmp_path) -> None:
    """HDF5 reads % in virtual sources' names as a format: they are written escaped."""
    folder = tmp_path / "run 50%"
    folder.mkdir()
    parts = [np.arange(3.0) + k for k in range(2)]
    for k, part in enumerate(parts):
        with h5py.File(folder / f"x%b_{k}.h5", "w") as f:
            f["rate%"] = part
    found = survey(sorted(folder.glob("*.h5")), "concat", 0, None, None)
    write_joined(found, folder / "j.h5")
    with h5py.File(folder / "j.h5") as f:
        assert f["rate%"][...].tobytes() == np.concatenate(parts).tobytes()


def test_the_joined_file_depends_on_the_datasets_and_not_on_how_paths_are_spelled(
    files, monkeypatch
) -> None:
    folder = files[0].parent
    plain = job(folder, {"combine": "concat"}).series
    picked = job(folder, {"combine": "concat", "datasets": ["/x"]}).series
    assert digest(plain) != digest(picked)
    monkeypatch.chdir(folder.parent)
    relative = job(Path(folder.name), {"combine": "concat"}).series
    assert relative.sources[0] != plain.sources[0] and digest(relative) == digest(plain)


def test_fixed_axes_of_different_dimensions_are_not_guessed(tmp_path) -> None:
    """No axis may grow and data uses two dimensions along axis 0: name what to join."""
    for k in range(2):
        with h5py.File(tmp_path / f"d{k}.h5", "w") as f:
            time, y = (
                f.create_dataset("time", data=[k, k + 0.5]),
                f.create_dataset("y", data=[1.0, 2, 3]),
            )
            time.make_scale("time")
            y.make_scale("y")
            f["T"] = np.ones((2, 3))
            f["T"].dims[0].attach_scale(time)
            f["T"].dims[1].attach_scale(y)
            f["static"] = np.ones(3)
            f["static"].dims[0].attach_scale(y)
    paths = sorted(tmp_path.glob("d*.h5"))
    with pytest.raises(UsageError, match=r"different dimensions there \(/time: /T; /y: /static\)"):
        survey(paths, "concat", 0, None, None)
    named = survey(paths, "concat", 0, ["/T"], None)  # T and its time: y is not joined
    assert {p: j.shape for p, j in named.joined.items()} == {"/T": (4, 3), "/time": (4,)}
    along_y = survey(paths, "concat", 1, ["/T"], None)  # the y scale along its own axis 0
    assert {p: j.shape for p, j in along_y.joined.items()} == {"/T": (2, 6), "/y": (6,)}


def test_order_by_refuses_a_first_value_that_is_not_finite(files) -> None:
    for k, path in enumerate(files):
        with h5py.File(path, "a") as f:
            f["t"] = [np.nan if k else 1.0]
    with pytest.raises(UsageError, match=r"input.order_by = '/t': '.*d1.h5' starts at nan"):
        survey(files, "stack", 0, ["/c"], "/t")


def test_a_list_keeps_its_order_a_glob_sorts_by_numbers(tmp_path) -> None:
    for name in ("s_10.h5", "s_9.h5", "s_2.h5"):
        with h5py.File(tmp_path / name, "w") as f:
            f["x"] = [1.0]
    listed = job(tmp_path, {"path": ["s_10.h5", "s_2.h5", "s_9.h5"], "combine": "concat"})
    assert [p.name for p in listed.series.sources] == ["s_10.h5", "s_2.h5", "s_9.h5"]
    globbed = job(tmp_path, {"path": "s_*.h5", "combine": "concat"})
    assert [p.name for p in globbed.series.sources] == ["s_2.h5", "s_9.h5", "s_10.h5"]


def test_a_glob_that_matches_the_output_leaves_it_out(files) -> None:
    folder = files[0].parent
    found = job(folder, {"combine": "concat"}, {"path": "d9.h5"})
    assert found.series.sources == tuple(files)  # d9.h5 does not exist yet
    with h5py.File(folder / "d9.h5", "w") as f:  # an earlier run's output
        f["x"] = np.zeros((1, 4))
    assert job(folder, {"combine": "concat"}, {"path": "d9.h5"}).series.sources == tuple(files)
    with pytest.raises(UsageError, match=r"would overwrite an input of the series"):
        job(folder, {"path": ["d0.h5", "d9.h5"], "combine": "concat"}, {"path": "d9.h5"})


def test_a_long_output_name_gives_a_joined_name_the_file_system_takes(files) -> None:
    folder = files[0].parent
    name = "o" * 240 + ".h5"
    (only,) = job(folder, {"combine": "concat"}, {"path": name}).files
    assert len(only.input.name) < 200 and only.input.name.startswith(".ooo")
    prepare(job(folder, {"combine": "concat"}, {"path": name}).series, only.input)
    assert only.input.is_file()
    remove_joined(folder / name)
    assert not only.input.exists()


def test_a_glob_in_a_list_sorts_by_numbers_and_a_link_to_the_folder_is_the_same_series(
    tmp_path,
) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("s_10.h5", "s_9.h5", "s_2.h5"):
        with h5py.File(folder / name, "w") as f:
            f["x"] = [1.0]
    (tmp_path / "link").symlink_to(folder)
    listed = job(tmp_path, {"path": ["run/s_*.h5"], "combine": "concat"})
    assert [p.name for p in listed.series.sources] == ["s_2.h5", "s_9.h5", "s_10.h5"]
    linked = job(tmp_path, {"path": "link/s_*.h5", "combine": "concat"})
    assert digest(linked.series) == digest(listed.series)


def test_a_glob_that_matches_a_subfiled_outputs_parts_leaves_them_out(files) -> None:
    folder = files[0].parent
    (folder / "d9.h5.parts").mkdir()
    with h5py.File(folder / "d9.h5", "w") as f:
        f["x"] = np.zeros((1, 4))
    found = job(folder, {"path": "d*", "combine": "concat"}, {"path": "d9.h5"})
    assert found.series.sources == tuple(files)
