"""Subfiled output through the command line: `h5par run` with layout = "subfiled",
`h5par consolidate` on another rank count, and 2 ranks with PyPI's serial h5py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import h5py
import numpy as np

from h5par.app.demo import write_demo_input

REPO = Path(__file__).resolve().parents[2]
JOB = """version = 1
[input]
path = "demo_input.h5"
datasets = ["/simulation/field", "/*/temperature"]
[output]
path = "{name}"
layout = "subfiled"
compression = "gzip"
[[kernels]]
name = "fill"
value = 0.0
[[kernels]]
name = "clip"
min = 0.0
[run]
memory = "1MiB"
file_parallel_below = 0
"""


def reference(x: np.ndarray) -> np.ndarray:
    return np.clip(np.where(np.isnan(x), 0.0, x), 0.0, None)


def check(out: Path, demo: Path) -> None:
    with h5py.File(demo) as fin, h5py.File(out) as fout:
        for path in ("simulation/field", "15/temperature", "20/temperature"):
            assert fout[path][...].tobytes() == reference(fin[path][...]).tobytes(), path
        assert fout["simulation/field"].attrs["units"] == "m/s"


def test_run_subfiled_then_consolidate_on_another_rank_count(run_mpi, tmp_path) -> None:
    write_demo_input(tmp_path / "demo_input.h5")
    (tmp_path / "job.toml").write_text(JOB.format(name="sub.h5"))
    ran = run_mpi(2, ["-m", "mpi4py", "-m", "h5par", "run", "job.toml"], cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert sorted(p.name for p in (tmp_path / "sub.h5.parts").iterdir()) == [
        "part-00000.h5",
        "part-00001.h5",
    ]
    with h5py.File(tmp_path / "sub.h5") as f:
        assert f["simulation/field"].is_virtual
    check(tmp_path / "sub.h5", tmp_path / "demo_input.h5")
    listed = run_mpi(1, ["-m", "h5par", "ls", "sub.h5"], cwd=tmp_path)
    assert "/simulation/field  dataset float64[48, 128, 128]  virtual (2 source file(s))" in (
        listed.stdout
    )
    args = ["-m", "mpi4py", "-m", "h5par", "consolidate", "sub.h5", "one.h5"]
    merged = run_mpi(3, args, cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    assert merged.stdout.count("h5par consolidate: sub.h5 -> one.h5: 3 dataset(s)") == 1
    check(tmp_path / "one.h5", tmp_path / "demo_input.h5")
    with h5py.File(tmp_path / "one.h5") as f:
        field = f["simulation/field"]
        assert not field.is_virtual and field.compression == "gzip"
    diff = subprocess.run(
        ["h5diff", "sub.h5", "one.h5"], cwd=tmp_path, capture_output=True, check=False
    )
    assert diff.returncode == 0, diff.stdout


def test_subfiled_output_needs_no_parallel_hdf5(run_mpi, tmp_path, serial_python) -> None:
    write_demo_input(tmp_path / "demo_input.h5")
    (tmp_path / "job.toml").write_text(JOB.format(name="sub.h5"))
    env = {"PYTHONPATH": str(REPO)}
    probe = run_mpi(1, ["-c", "import h5py; print(h5py.get_config().mpi)"], python=serial_python)
    assert probe.stdout.split() == ["False"]
    ran = run_mpi(
        2, ["-m", "mpi4py", "-m", "h5par", "run", "job.toml"], cwd=tmp_path, env=env,
        python=serial_python,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert len(list((tmp_path / "sub.h5.parts").iterdir())) == 2
    check(tmp_path / "sub.h5", tmp_path / "demo_input.h5")
