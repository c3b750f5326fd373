"""`h5par demo` runs a real parallel job whose output equals numpy's."""

import h5py
import numpy as np
import pytest


@pytest.mark.parametrize("nranks", [1, 2])
def test_demo_cleans_every_step_like_numpy(run_mpi, tmp_path, nranks) -> None:
    result = run_mpi(nranks, ["-m", "mpi4py", "-m", "h5par", "demo", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    assert f"4 datasets cleaned on {nranks} rank(s)" in result.stdout
    assert result.stdout.count("h5par demo:") == 1
    with (
        h5py.File(tmp_path / "demo_input.h5") as fin,
        h5py.File(tmp_path / "demo_clean.h5") as fout,
    ):
        assert fout.attrs["title"] == fin.attrs["title"]
        np.testing.assert_array_equal(fout["grid/x"][...], fin["grid/x"][...])
        for step in range(4):
            name = f"step_{step:03d}/temperature"
            expected = np.clip(fin[name][...], 0.0, None).astype(np.float32)
            got = fout[name]
            assert got.dtype == np.float32 and got.compression == "gzip" and got.shuffle
            assert got[...].tobytes() == expected.tobytes()
            assert dict(got.attrs) == {"dt": 10.0, "units": "K"}
            assert f"/{name}: min=0, max={expected.max():.6g}" in result.stdout
