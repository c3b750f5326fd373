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
