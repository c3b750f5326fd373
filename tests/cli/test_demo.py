"""`h5par demo` writes the book's weather stations and a simulation field and cleans them."""

import h5py
import numpy as np
import pytest

DATASETS = ["15/temperature", "15/wind", "20/temperature", "simulation/field"]


@pytest.mark.parametrize("nranks", [1, 2])
def test_demo_cleans_like_numpy(run_mpi, tmp_path, nranks) -> None:
    result = run_mpi(nranks, ["-m", "mpi4py", "-m", "h5par", "demo", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    assert f"4 dataset(s) on {nranks} rank(s)" in result.stdout
    assert result.stdout.count("h5par run:") == 1
    assert "[all ranks]" in result.stdout
    with (
        h5py.File(tmp_path / "demo_input.h5") as fin,
        h5py.File(tmp_path / "demo_input_clean.h5") as fout,
    ):
        assert fout.attrs["title"] == fin.attrs["title"]
        assert fout.attrs["h5par_job_sha256"] and "demo_input.h5" in fout.attrs["h5par_job"]
        np.testing.assert_array_equal(fout["simulation/time"][...], fin["simulation/time"][...])
        for name in DATASETS:
            x = fin[name][...]
            filled = x.copy()
            filled[np.isnan(filled)] = 0.0
            expected = np.clip(filled, 0.0, None).astype(np.float32)
            got = fout[name]
            assert got.dtype == np.float32 and got.compression == "gzip" and got.shuffle
            assert got[...].tobytes() == expected.tobytes()
            assert dict(got.attrs) == dict(fin[name].attrs)
            assert f"/{name}: min=0, max={expected.max():.6g}" in result.stdout
    # The job the demo wrote runs again through `h5par run`.
    again = run_mpi(
        nranks,
        ["-m", "mpi4py", "-m", "h5par", "run", str(tmp_path / "demo_job.toml"), "--overwrite"],
    )
    assert again.returncode == 0, again.stderr
