"""Links and a second run: one file reached under two names is one work folder (for real).

An in-place job on ``data.h5`` and another on ``link.h5 -> data.h5`` used two work folders
(named after the link), so both wrote into one file at once under mpio.
"""

from __future__ import annotations

import sys
import time

import h5py
import numpy as np
import pytest

WRAPPER = "import sys, h5par.app.cli as c; s = c.main(sys.argv[1:]); print(f'EXIT {s}', flush=True); sys.exit(s)"
JOB = """version = 1
[input]
path = "{path}"
[output]
in_place = true
[[kernels]]
name = "scale"
factor = 2
[run]
memory = "64KiB"
file_parallel_below = 0
"""


@pytest.mark.timeout(300)
def test_an_in_place_run_through_a_link_is_refused_while_the_file_is_worked_on(
    mpitools, tmp_path
) -> None:
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"] = np.ones(32768)  # 16 units of 16 KiB
    (tmp_path / "link.h5").symlink_to("data.h5")
    (tmp_path / "a.toml").write_text(JOB.format(path="data.h5"))
    (tmp_path / "b.toml").write_text(JOB.format(path="link.h5"))
    env = mpitools.mpi_env()
    first = mpitools.background(
        ["mpirun", "--oversubscribe", "-n", "2", sys.executable, "-c", WRAPPER, "run", "a.toml"],
        tmp_path,
        {**env, "H5PAR_FAULT": "kernel:*:delay=0.6"},
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / ".data.h5.h5par" / "journal.json").is_file():
            assert first.poll() is None and time.monotonic() < deadline, mpitools.finish(first, 10)
            time.sleep(0.05)
        second = mpitools.launch(
            [sys.executable, "-c", WRAPPER, "run", "b.toml"], cwd=tmp_path, env=env, timeout=120
        )
        assert first.poll() is None, "the first run ended before the second was refused"
    finally:
        code, out, err = mpitools.finish(first, 180)
    assert second.returncode == 2, (second.stdout, second.stderr)
    assert "another h5par run is working in" in second.stderr, second.stderr
    assert ".data.h5.h5par" in second.stderr, second.stderr
    assert code == 0 and out.count("EXIT 0") == 2, (out, err)
    with h5py.File(tmp_path / "data.h5", "r") as f:
        assert (f["x"][...] == 2.0).all()  # scaled once: the second run never wrote
    assert not (tmp_path / ".link.h5.h5par").exists()


@pytest.mark.timeout(120)
def test_a_busy_file_whose_name_holds_a_newline_is_refused_in_one_line(mpitools, tmp_path) -> None:
    from h5par.engine.lock import take

    name = "snap\nrun 1 ü.h5"
    with h5py.File(tmp_path / name, "w") as f:
        f["x"] = np.ones(8)
    (tmp_path / "job.toml").write_text(JOB.format(path="snap*.h5"))
    with take(tmp_path / f".{name}.h5par"):  # another run holds its work folder
        done = mpitools.launch(
            [sys.executable, "-c", WRAPPER, "run", "job.toml"],
            cwd=tmp_path,
            env=mpitools.mpi_env(),
            timeout=60,
        )
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "another h5par run is working in" in lines[0] and "snap\\nrun 1" in lines[0], lines
    with h5py.File(tmp_path / name, "r") as f:
        assert (f["x"][...] == 1.0).all()
