"""Files written at test time by netCDF4-python and PyTables survive a parallel h5par job and
still open with those libraries (dimensions, scales, titles, tables intact)."""

from pathlib import Path

import pytest

HELPER = str(Path(__file__).with_name("foreign_tools.py"))
CLIP = "import sys, h5par; h5par.apply(sys.argv[1], sys.argv[2], [{'name': 'clip', 'min': 0}], datasets=[sys.argv[3]], memory='4KiB')"


@pytest.mark.parametrize(("tool", "dataset"), [("netcdf", "/t2m"), ("tables", "/run/field")])
def test_round_trip_through_a_parallel_job(run_python, run_mpi, tmp_path, tool, dataset) -> None:
    src, out = tmp_path / f"in.{tool}.h5", tmp_path / f"out.{tool}.h5"
    written = run_python([HELPER, f"write-{tool}", str(src)])
    assert written.returncode == 0, written.stderr
    ran = run_mpi(2, ["-c", CLIP, str(src), str(out), dataset])
    assert ran.returncode == 0, ran.stderr
    checked = run_python([HELPER, f"check-{tool}", str(src), str(out)])
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("kind", "name"), [("NETCDF3_CLASSIC", "classic"), ("NETCDF3_64BIT_OFFSET", "64-bit offset")]
)
def test_a_netcdf3_file_says_how_to_convert_it(run_python, run_mpi, tmp_path, kind, name) -> None:
    src = tmp_path / "old.nc"
    written = run_python([HELPER, "write-netcdf3", str(src), kind])
    assert written.returncode == 0, written.stderr
    ran = run_mpi(2, ["-m", "mpi4py", "-m", "h5par", "run", "job.toml"], cwd=write_job(tmp_path))
    errors = [line for line in ran.stderr.splitlines() if line.startswith("h5par: error:")]
    assert ran.returncode == 2 and len(errors) == 1, ran.stderr
    assert f"'old.nc' is a netCDF-3 file ({name} format), not HDF5" in errors[0]
    assert "`nccopy -k nc4 old.nc old_nc4.nc`" in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.toml", "old.nc"]


def write_job(folder: Path) -> Path:
    text = 'version = 1\n[input]\npath = "old.nc"\n[output]\npath = "out.nc"\n'
    (folder / "job.toml").write_text(text + '[[kernels]]\nname = "abs"\n')
    return folder
