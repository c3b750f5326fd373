"""Defects found by review of the layer refactor and whole-chunk units, through ``h5par run``.

Each failed on arch/layers c3e6d87. The hang of a one-rank compressed run resumed on two
ranks, older than the refactor, is in ``test_partly_allocated.py``.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

JOB = """version = 1
[input]
path = "in.h5"
[output]
path = "out.h5"
[[kernels]]
name = "scale"
factor = 2.0
[run]
file_parallel_below = 0
watchdog = 4
"""


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun")
def test_the_validate_fault_point_fires_in_h5par_run(tmp_path: Path, mpitools) -> None:
    """README lists ``validate`` among H5PAR_FAULT's points: batch.run's agreement over the
    job's Work objects enters it (apply() did before the refactor)."""
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f["x"] = np.arange(1000.0)
    (tmp_path / "job.toml").write_text(JOB)
    cmd = ["mpirun", "-n", "2", sys.executable, "-m", "mpi4py", "-m", "h5par", "run", "job.toml"]
    env = mpitools.mpi_env({"H5PAR_FAULT": "validate:1:raise"})
    done = mpitools.launch(cmd, cwd=tmp_path, env=env, timeout=60)
    assert "injected fault at validate" in done.stdout + done.stderr
    assert done.returncode != 0 and not (tmp_path / "out.h5").exists()


STALE_JOB = """version = 1
[input]
path = ["f1.h5", "f2.h5"]
[output]
path = "{stem}_o.h5"
[run]
file_parallel_below = 0
[[kernels]]
name = "abs"
"""


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun")
def test_a_later_input_replaced_while_an_earlier_one_runs_is_refused_then_rerun(
    tmp_path: Path, mpitools
) -> None:
    """batch.run inspects every input up front and run_work() reuses those plans. f2.h5
    replaced (100 -> 200 elements) while f1.h5 runs: the stale plan is refused with one
    line naming the file, nothing is published for it, and a rerun processes the new file
    whole (f1.h5, finished, is skipped)."""
    for name, n in (("f1", 100), ("f2", 100), ("new", 200)):
        with h5py.File(tmp_path / f"{name}.h5", "w") as f:
            f["x"] = -np.arange(float(n))
    (tmp_path / "job.toml").write_text(STALE_JOB)
    cmd = ["mpirun", "-n", "1", sys.executable, "-m", "mpi4py", "-m", "h5par", "run", "job.toml"]
    env = mpitools.mpi_env({"H5PAR_FAULT": "read:0:delay=3"})  # f1.h5's first step waits
    proc = mpitools.background(cmd, cwd=tmp_path, env=env)
    folder = tmp_path / ".f1_o.h5.h5par"
    for _ in range(200):  # f1.h5 is being processed: every plan was made
        if folder.exists():
            break
        time.sleep(0.05)
    (tmp_path / "new.h5").rename(tmp_path / "f2.h5")
    status, out, err = mpitools.finish(proc, 60)
    assert status == 1, out + err
    assert "f2.h5 changed after the job checked it" in err, err
    assert (tmp_path / "f1_o.h5").exists() and not (tmp_path / "f2_o.h5").exists()
    again = mpitools.launch(cmd, cwd=tmp_path, env=mpitools.mpi_env(), timeout=60)
    assert again.returncode == 0, again.stderr
    with h5py.File(tmp_path / "f2_o.h5", "r") as f:
        assert f["x"][...].tolist() == np.arange(200.0).tolist()
