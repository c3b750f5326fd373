"""`h5par info` reports the stack once, from rank 0, and says whether h5py is parallel."""

import h5py


def test_info_single_process(run_python) -> None:
    result = run_python(["-m", "h5par", "info"])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"HDF5{'':<3}" in out or "HDF5 " in out
    assert h5py.version.hdf5_version in out
    assert "h5py built with MPI" in out
    assert "ranks" in out and out.count("h5par ") == 1


def test_info_under_mpirun_prints_once_with_mpi(run_mpi) -> None:
    result = run_mpi(2, ["-m", "h5par", "info"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sum(line.startswith("h5par ") for line in lines) == 1
    row = {
        line.split("  ")[0].strip(): line.split("  ")[-1].strip() for line in lines if "  " in line
    }
    assert row["h5py built with MPI"] == "yes"
    assert row["ranks"] == "2"
    assert row["HDF5"] == h5py.version.hdf5_version
    assert row["parallel filters (compressed parallel writes)"] == "yes"


def test_unknown_verb_is_usage_error(run_python) -> None:
    result = run_python(["-m", "h5par", "frobnicate"])
    assert result.returncode == 2
    assert "invalid choice: 'frobnicate'" in result.stderr
    assert "info" in result.stderr
