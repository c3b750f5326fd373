"""Attribute edits, the history line and provenance = false through `h5par run` and `plan`
(issue 19): netCDF tools read the result as ncatted would leave it, bad edits are one line
with exit 2 before anything is written, an identity job without provenance is h5diff-clean.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

netCDF4 = pytest.importorskip("netCDF4")  # noqa: N816 (the module's own name)

OLD_HISTORY = "Mon Jan  1 00:00:00 2024: ncks -O a.nc in.nc"
EDITS = """
[output.attrs]
"/" = { title = "run 42, cleaned", version = 3 }
"/T" = { units = "degC", _FillValue = -9999, scale = [1, 2.5], names = ["a", "b"] }
[output.delete_attrs]
"/T" = ["valid_range"]
"""


@pytest.fixture
def work(tmp_path) -> Path:
    with netCDF4.Dataset(tmp_path / "in.nc", "w") as d:
        d.createDimension("x", 1000)
        v = d.createVariable("T", "f4", ("x",), fill_value=-1.0)
        v[:] = np.arange(1000, dtype="f4") - 10
        v.units = "K"
        v.valid_range = np.array([0, 100], "f4")
        d.history = OLD_HISTORY
        d.title = "orig"
    return tmp_path


def write_job(folder: Path, output: str, extra: str = EDITS) -> None:
    text = f'[input]\npath = "in.nc"\n[output]\n{output}\n{extra}'
    text += '[[kernels]]\nname = "clip"\nmin = 0.0\n'
    (folder / "job.toml").write_text(text)


def ncdump_header(path: Path) -> str:
    return subprocess.run(
        ["ncdump", "-h", str(path)], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.timeout(300)
@pytest.mark.parametrize("nranks", [1, 2])
@pytest.mark.parametrize("in_place", [False, True], ids=["output", "in-place"])
def test_edits_and_history_read_as_ncatted_would_leave_them(
    work, mpitools, nranks, in_place
) -> None:
    write_job(work, "in_place = true" if in_place else 'path = "out.nc"')
    args = ["--set", "run.file_parallel_below=0"]  # every rank writes: collective metadata
    done = mpitools.h5par_run(work, nranks, *args)
    assert done.returncode == 0, done.stderr
    out = work / ("in.nc" if in_place else "out.nc")
    with netCDF4.Dataset(out) as d:
        t = d["T"]
        assert t.units == "degC" and list(t.names) == ["a", "b"]
        scale = t.getncattr("scale")  # (Variable.scale is netCDF4-python's own)
        assert scale.tolist() == [1.0, 2.5] and scale.dtype == np.float64
        assert "valid_range" not in t.ncattrs()
        assert d.title == "run 42, cleaned" and d.version == 3
        lines = d.history.split("\n")
        assert lines[1:] == [OLD_HISTORY]
        assert re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: h5par run job\.toml --set "
            r"run\.file_parallel_below=0 \(h5par \S+\)",
            lines[0],
        ), lines[0]
    with h5py.File(out) as f:
        assert f["T"].attrs["_FillValue"].dtype == np.float32
        x = np.arange(1000, dtype="f4") - 10
        want = np.where(x == -1, x, np.clip(x, 0, None))  # the input's _FillValue passes
        assert f["T"][...].tobytes() == want.tobytes()
        assert "h5par_job" in f.attrs
    header = ncdump_header(out)  # netCDF's char, as ncatted writes text (not `string`)
    assert '\t\tT:units = "degC" ;' in header and "\t\t:history = " in header
    assert '\t\t:title = "run 42, cleaned" ;' in header


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            '[output.attrs]\n"/U" = { units = "K" }\n',
            r'output.attrs: object "/U" is not in the input',
        ),
        (
            '[output.delete_attrs]\n"/T" = ["unit"]\n',
            r"output.delete_attrs.\"/T\": no attribute 'unit' to delete \(it has: ",
        ),
        (
            '[output.attrs]\n"/T" = { _FillValue = 1e300 }\n',
            r"_FillValue = 1e\+300: 1e\+300 does not fit the dataset's float32",
        ),
        ('[output.attrs]\n"/T" = { ok = true }\n', r"ok = True \(valid: a string, an integer"),
    ],
)
def test_bad_edits_are_found_by_plan_and_refused_by_run(work, mpitools, extra, message) -> None:
    write_job(work, 'path = "out.nc"', extra)
    before = (work / "in.nc").read_bytes()
    for verb in ("plan", "run"):
        cmd = [*mpitools.h5par_run(work, 1).args[:-2], verb, "job.toml"]  # the same launcher
        done = mpitools.launch(cmd, cwd=work, env=mpitools.mpi_env())
        assert done.returncode == 2, (verb, done.stderr)
        lines = [line for line in done.stderr.splitlines() if line.startswith("h5par")]
        assert len(lines) == 1 and re.search(message, lines[0]), done.stderr
    assert not (work / "out.nc").exists() and (work / "in.nc").read_bytes() == before
    assert sorted(p.name for p in work.iterdir()) == ["in.nc", "job.toml"]


@pytest.mark.timeout(300)
def test_identity_job_without_provenance_is_h5diff_clean(work, mpitools) -> None:
    (work / "job.toml").write_text(
        '[input]\npath = "in.nc"\n[output]\npath = "out.nc"\nprovenance = false\n'
    )
    done = mpitools.h5par_run(work, 2)
    assert done.returncode == 0, done.stderr
    diff = subprocess.run(
        ["h5diff", "-c", "in.nc", "out.nc"], cwd=work, capture_output=True, text=True
    )
    assert diff.returncode == 0, diff.stdout
    with h5py.File(work / "out.nc") as f:
        assert f.attrs["history"] == OLD_HISTORY.encode() and not any(
            name.startswith("h5par_") for name in f.attrs
        )
    again = mpitools.h5par_run(work, 1)  # no record: the output is not known as done
    assert again.returncode == 2 and "exists (set output.overwrite = true" in again.stderr


def test_edits_of_a_dropped_object_are_refused(work, mpitools) -> None:
    with netCDF4.Dataset(work / "in.nc", "a") as d:
        d.createVariable("U", "f4", ("x",))
    write_job(work, 'path = "out.nc"\nunselected = "drop"', '[output.attrs]\n"/U" = { a = 1 }\n')
    (work / "job.toml").write_text(
        (work / "job.toml").read_text().replace('path = "in.nc"', 'path = "in.nc"\ndatasets = "/T"')
    )
    done = mpitools.h5par_run(work, 1)
    assert done.returncode == 2
    assert (
        "object \"/U\" is not in the output (output.unselected = 'drop' leaves it out)"
        in done.stderr
    )


@pytest.mark.timeout(300)
def test_an_in_place_run_that_failed_after_its_edits_is_finished_by_a_rerun(work, mpitools) -> None:
    write_job(work, "in_place = true")
    failed = mpitools.h5par_run(work, 2, fault="finalize:0:raise")  # data and edits done
    assert failed.returncode == 1 and "partly updated" in failed.stderr, failed.stderr
    with h5py.File(work / "in.nc") as f:
        assert "valid_range" not in f["T"].attrs  # deleted before the failure
    done = mpitools.h5par_run(work, 2)  # the deletion it made is no error now
    assert done.returncode == 0, done.stderr
    with h5py.File(work / "in.nc") as f:
        x = np.arange(1000, dtype="f4") - 10
        assert f["T"][...].tobytes() == np.where(x == -1, x, np.clip(x, 0, None)).tobytes()
        assert f["T"].attrs["units"] == b"degC"
