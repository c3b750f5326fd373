"""Coordinates stay coordinates: without ``input.datasets`` a job processes every dataset
that is not a dimension scale (issue 22, item 2). A netCDF-4 file written at test time by
netCDF4-python goes through ``astype`` at 1 and 2 ranks; ``/time``, the coordinate variables
and the dimension placeholder ``/z`` are copied untouched, netCDF4-python (and ``ncdump`` when
installed) reads the output."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import h5py
import pytest

HELPER = str(Path(__file__).with_name("foreign_tools.py"))
JOB = """version = 1
[input]
path = "in.nc"
{datasets}
[output]
path = "out.nc"
[[kernels]]
name = "astype"
dtype = "float32"
"""
SCALES = ("/time", "/z", "/y", "/x")


def climate_job(run_python, folder: Path, datasets: str = "") -> None:
    written = run_python([HELPER, "write-climate", str(folder / "in.nc")])
    assert written.returncode == 0, written.stderr
    (folder / "job.toml").write_text(JOB.format(datasets=datasets))


def scale_state(path: Path) -> dict[str, tuple[str, bytes, list[str]]]:
    """Each scale's dtype, bytes and the datasets attached to it, as h5py sees them."""
    with h5py.File(path, "r") as f:
        state = {}
        for name in SCALES:
            scale = f[name]
            assert scale.is_scale, name
            users = [f[ref].name for ref, _ in scale.attrs.get("REFERENCE_LIST", [])]
            state[name] = (scale.dtype.str, scale[...].tobytes(), sorted(users))
        return state


def check_with_netcdf4(run_python, folder: Path, *converted: str) -> None:
    """netCDF4-python reads ``out.nc``: ``converted`` variables float32, the rest unchanged."""
    files = [str(folder / "in.nc"), str(folder / "out.nc")]
    checked = run_python([HELPER, "check-climate", *files, *converted])
    assert checked.returncode == 0, checked.stdout + checked.stderr


def check_ncdump(path: Path) -> None:
    """``ncdump -h`` reads the output (skipped without netCDF's tools installed)."""
    if shutil.which("ncdump") is None:
        return
    done = subprocess.run(["ncdump", "-h", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "float T(time, z, y, x) ;" in done.stdout and "double time(time) ;" in done.stdout


@pytest.mark.parametrize("nranks", [1, 2])
def test_default_selection_leaves_coordinates_alone(run_python, mpitools, tmp_path, nranks) -> None:
    climate_job(run_python, tmp_path)
    ran = mpitools.h5par_run(tmp_path, nranks, "--quiet")
    assert ran.returncode == 0, ran.stderr
    assert "2 dataset(s)" in ran.stdout  # T and u, nothing else
    assert scale_state(tmp_path / "out.nc") == scale_state(tmp_path / "in.nc")
    with h5py.File(tmp_path / "out.nc", "r") as f:
        assert [f["T"].dtype.str, f["u"].dtype.str] == ["<f4", "<f4"]
        assert [[s.name for s in f["T"].dims[k].values()] for k in range(4)] == [
            [s] for s in SCALES
        ]
    check_with_netcdf4(run_python, tmp_path, "T", "u")
    check_ncdump(tmp_path / "out.nc")


def test_a_scale_named_is_processed_and_stays_attached(run_python, mpitools, tmp_path) -> None:
    climate_job(run_python, tmp_path, 'datasets = ["/time", "/T"]')
    ran = mpitools.h5par_run(tmp_path, 2, "--quiet")
    assert ran.returncode == 0, ran.stderr
    with h5py.File(tmp_path / "out.nc", "r") as f:
        assert f["time"].dtype.str == "<f4" and f["time"].is_scale
        for name in ("T", "u"):  # u was not processed, and both still use the new /time
            assert h5py.h5ds.is_attached(f[name].id, f["time"].id, 0), name
    check_with_netcdf4(run_python, tmp_path, "time", "T")


def test_a_selection_of_a_scale_not_named_says_how_to_name_it(
    run_python, mpitools, tmp_path
) -> None:
    climate_job(run_python, tmp_path, '[input.select]\n"/time" = "0:2"')
    ran = mpitools.h5par_run(tmp_path, 1, "--quiet")
    assert ran.returncode == 2, ran.stderr
    assert "dimension scales are processed only when input.datasets names them" in ran.stderr
