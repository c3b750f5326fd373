"""Attribute edits and the history line (issue 19): validation, typing, jobs (pure, no MPI)."""

from __future__ import annotations

import datetime

import h5py
import numpy as np
import pytest

from h5par import UsageError
from h5par.core.attributes import Edit, attribute_edits, history_line, typed_value
from h5par.engine.jobs import job_from_dict
from h5par.hdf5.attributes import planned_edits, read_text, write_history, write_text


@pytest.mark.parametrize(
    ("values", "deletions", "message"),
    [
        ({"/T": {"flag": True}}, None, r'output.attrs."/T".flag = True \(valid: a string'),
        ({"/T": {"v": [[1, 2]]}}, None, r"v = \[\[1, 2\]\] \(valid: "),
        ({"/T": {"v": [1, "a"]}}, None, r"v = \[1, 'a'\] \(valid: "),
        ({"/T": {"v": []}}, None, r"v = \[\] \(valid: "),
        ({"/T": {"v": {"a": 1}}}, None, r"v = \{'a': 1\} \(valid: "),
        ({"T": {"units": "K"}}, None, r'object "T" \(valid: a path from the root'),
        ({"/T": "K"}, None, r"\"/T\" = 'K' \(valid: a table of attribute names"),
        ({"/T": {"a/b": 1}}, None, r"attribute name 'a/b' \(valid: a name without '/'\)"),
        ({"/T": {"": 1}}, None, r"attribute name '' "),
        ({"/T": {"DIMENSION_LIST": 1}}, None, r"'DIMENSION_LIST' is kept by HDF5, netCDF"),
        ({"/": {"h5par_job": "x"}}, None, r"'h5par_job' is kept by HDF5, netCDF or h5par"),
        (None, {"/T": "units"}, r"delete_attrs.\"/T\" = 'units' \(valid: a list of attribute"),
        (None, {"/T": ["_Netcdf4Dimid"]}, r"'_Netcdf4Dimid' is kept"),
        ({"/T": {"units": "K"}}, {"/T": ["units"]}, r"both name \"/T\" 'units'"),
        ([1], None, r"output.attrs = \[1\] \(valid: a table of object paths\)"),
    ],
)
def test_bad_edits_are_one_line_naming_the_value_and_what_is_valid(
    values, deletions, message
) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        attribute_edits(values, deletions)
    assert "\n" not in str(caught.value)


def test_edits_keep_toml_types_and_delete_first() -> None:
    edits = attribute_edits(
        {"/": {"title": "t", "n": 3, "x": 2.5, "ints": [1, 2], "mixed": [1, 2.5], "s": ["a"]}},
        {"/T": ["valid_range"]},
    ).edits()
    assert edits[0] == Edit("/T", "valid_range")
    typed = {e.name: typed_value(e) for e in edits[1:]}
    assert typed["title"] == "t" and typed["s"] == ["a"]
    assert typed["n"].dtype == np.int64 and typed["n"] == 3
    assert typed["x"].dtype == np.float64 and typed["x"] == 2.5
    assert typed["ints"].dtype == np.int64 and typed["ints"].tolist() == [1, 2]
    assert typed["mixed"].dtype == np.float64 and typed["mixed"].tolist() == [1.0, 2.5]


@pytest.mark.parametrize("name", ["_FillValue", "missing_value", "valid_min", "valid_max"])
def test_data_type_attributes_take_the_datasets_dtype(name) -> None:
    assert typed_value(Edit("/T", name, -5), np.dtype("i2")).dtype == np.dtype("i2")
    assert typed_value(Edit("/T", name, 1.5), np.dtype(">f4")).dtype == np.dtype(">f4")
    assert typed_value(Edit("/T", "units", 1.5), np.dtype("i2")).dtype == np.float64
    assert typed_value(Edit("/", name, 7), None).dtype == np.int64  # a group: TOML's type


@pytest.mark.parametrize(
    ("value", "dtype", "valid"),
    [(-9999.0, "u1", "whole numbers 0..255"), (2.5, "i4", "whole numbers"), (1e300, "f4", "NaN")],
)
def test_a_value_the_dataset_cannot_hold_is_refused(value, dtype, valid) -> None:
    with pytest.raises(UsageError, match=f"does not fit the dataset's .*valid: {valid}"):
        typed_value(Edit("/T", "_FillValue", value), np.dtype(dtype))


def test_history_is_one_line_in_front_keeping_the_old_lines_and_their_kind(tmp_path) -> None:
    when = datetime.datetime(2026, 12, 1, 20, 0, 5, tzinfo=datetime.UTC)
    line = history_line("h5par run a\nb.toml", when, "9.9")
    assert line == "2026-12-01T20:00:05Z: h5par run a b.toml (h5par 9.9)"
    with h5py.File(tmp_path / "f.h5", "w") as f:
        write_history(f, line)  # none before: netCDF's char (fixed length)
        assert f.attrs["history"] == line.encode()
        f.attrs.create("history", "old one\nolder", dtype=h5py.string_dtype())
        write_history(f, "new")
        assert f.attrs["history"] == "new\nold one\nolder"  # variable length stays so
        assert h5py.check_string_dtype(f.attrs.get_id("history").dtype).length is None
        f.attrs["history"] = np.array([b"in an array"])
        assert read_text(f.attrs, "history") == "in an array"


def test_planned_edits_name_missing_objects_and_attributes(tmp_path) -> None:
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("g/T", data=np.zeros(3, "f4")).attrs["units"] = "K"
        ok = planned_edits(
            f, attribute_edits({"/g/T": {"_FillValue": 1}}), {"/g/T": np.dtype("i2")}
        )
        assert ok[0][1].dtype == np.dtype("i2")  # the processed output's dtype, not the input's
        assert (
            planned_edits(f, attribute_edits({"/g/T": {"_FillValue": 1}}), {})[0][1].dtype == "f4"
        )
        with pytest.raises(UsageError, match=r'output.attrs: object "/g/X" is not in the input'):
            planned_edits(f, attribute_edits({"/g/X": {"a": 1}}), {})
        with pytest.raises(UsageError, match=r"no attribute 'unit' to delete \(it has: units\)"):
            planned_edits(f, attribute_edits(None, {"/g/T": ["unit"]}), {})
        with pytest.raises(
            UsageError, match=r"not in the output \(output.unselected = 'drop' leaves it out\)"
        ):
            planned_edits(f, attribute_edits({"/g/T": {"a": 1}}), {}, kept=lambda p: p == "/")


def _job(tmp_path, **output) -> dict:
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f["x"] = np.arange(3.0)
    return {"input": {"path": "in.h5"}, "output": output}


def test_jobs_read_the_edits_and_refuse_what_cannot_work(tmp_path) -> None:
    job = job_from_dict(
        _job(tmp_path, path="o.h5", attrs={"/x": {"units": "K"}}, delete_attrs={"/": ["a"]}),
        base=tmp_path,
    )
    assert job.attrs.values == {"/x": {"units": "K"}} and job.attrs.deletions == {"/": ["a"]}
    assert (
        job.provenance
        and not job_from_dict(
            _job(tmp_path, path="o.h5", provenance=False), base=tmp_path
        ).provenance
    )
    with pytest.raises(UsageError, match=r"output.provenance = false needs an output file"):
        job_from_dict(_job(tmp_path, in_place=True, provenance=False), base=tmp_path)
    with pytest.raises(
        UsageError, match=r"output.attrs = 'x' has the wrong type \(valid: a table\)"
    ):
        job_from_dict(_job(tmp_path, path="o.h5", attrs="x"), base=tmp_path)


def test_an_object_glob_edits_every_kept_object_it_matches(tmp_path) -> None:
    with h5py.File(tmp_path / "f.h5", "w") as f:
        for station in ("15", "20"):
            f.create_dataset(f"{station}/temperature", data=np.zeros(2)).attrs["dt"] = 1.0
        f["15/wind"] = np.zeros(2)
        edits = attribute_edits({"/*/temperature": {"units": "K"}}, {"/*/temperature": ["dt"]})
        planned = [(e.path, e.name, v) for e, v in planned_edits(f, edits, {})]
        assert planned == [
            ("/15/temperature", "dt", None),
            ("/20/temperature", "dt", None),
            ("/15/temperature", "units", "K"),
            ("/20/temperature", "units", "K"),
        ]
        groups = planned_edits(f, attribute_edits({"/[0-9]*": {"kind": "station"}}), {})
        assert [e.path for e, _ in groups] == ["/15", "/20"]
        only = planned_edits(
            f, edits, {}, kept=lambda p: p != "/20/temperature"
        )  # drop left it out
        assert {e.path for e, _ in only} == {"/15/temperature"}
        with pytest.raises(UsageError, match=r'pattern "/\*/pressure" matches no object'):
            planned_edits(f, attribute_edits({"/*/pressure": {"units": "Pa"}}), {})
        with pytest.raises(UsageError, match=r'"/15/wind": no attribute \'dt\' to delete'):
            planned_edits(f, attribute_edits(None, {"/15/*": ["dt"]}), {})


def test_values_an_attribute_cannot_hold_are_job_errors() -> None:
    with pytest.raises(UsageError, match=r"_FillValue = 'x': text for a float32 dataset"):
        typed_value(Edit("/u", "_FillValue", "x"), np.dtype("f4"))
    with pytest.raises(UsageError, match=r"a = 18446744073709551615: beyond 64-bit integers"):
        typed_value(Edit("/u", "a", 2**64 - 1))
    with pytest.raises(UsageError, match=r"beyond 64-bit integers"):
        typed_value(Edit("/u", "a", [1, -(2**63) - 1]))
    top = typed_value(Edit("/u", "_FillValue", 2**64 - 1), np.dtype("u8"))  # its dtype holds it
    assert top == np.uint64(2**64 - 1) and top.dtype == np.uint64


def test_long_and_empty_texts_and_histories_kept_as_arrays(tmp_path) -> None:
    with h5py.File(tmp_path / "f.h5", "w") as f:
        write_text(f.attrs, "comment", "x" * 70000)  # beyond a fixed string's 64 KiB header room
        assert f.attrs["comment"] == "x" * 70000
        write_text(f.attrs, "empty", "")
        assert f.attrs["empty"] == ""
        f.attrs["history"] = np.array([b"line1", b"line2"])  # one line per element
        write_history(f, "new")
        assert f.attrs["history"] == b"new\nline1\nline2"


def test_new_groups_above_derived_datasets_take_attributes(tmp_path) -> None:
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["u"] = np.zeros(2)
        planned = planned_edits(f, attribute_edits({"/grp": {"a": 1}}), {}, groups={"/grp"})
        assert [(e.path, e.name) for e, _ in planned] == [("/grp", "a")]
        globbed = planned_edits(f, attribute_edits({"/*": {"b": 2}}), {}, groups={"/grp"})
        assert sorted(e.path for e, _ in globbed) == ["/grp", "/u"]


def test_a_resumed_in_place_run_accepts_deletions_it_made(tmp_path) -> None:
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["u"] = np.zeros(2)
        edits = attribute_edits(None, {"/u": ["long_name"]})
        with pytest.raises(UsageError, match="no attribute 'long_name' to delete"):
            planned_edits(f, edits, {})
        assert planned_edits(f, edits, {}, resuming=True)[0][0] == Edit("/u", "long_name")
