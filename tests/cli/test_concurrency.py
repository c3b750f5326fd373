"""Two runs of one job at once, for real: two ``mpirun -n 2`` processes on one work folder.

The first run is slowed down (``kernel:*:delay=0.8`` per step); the second starts while the
first works and must be refused at once with one line naming the work folder (exit 2,
every rank), without touching the work folder: the first run ends as if alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

WRAPPER = "import sys, h5par.app.cli as c; s = c.main(sys.argv[1:]); print(f'EXIT {s}', flush=True); sys.exit(s)"
N = 32768  # float64 ones: 256 KiB, 16 units of 16 KiB under memory = 64KiB
JOB = """version = 1
[input]
path = "data.h5"
[output]
{output}
[[kernels]]
name = "scale"
factor = 2
[run]
memory = "64KiB"
"""
OUTPUTS = {"in place": ("in_place = true", "data.h5"), "new output": ('path = "out.h5"', "out.h5")}


def command(*extra: str) -> list[str]:
    return ["mpirun", "--oversubscribe", "-n", "2", sys.executable, "-c", WRAPPER, "run", *extra]


def start(mpitools, folder: Path, env: dict[str, str], fault: str) -> subprocess.Popen[str]:
    """Start ``h5par run job.toml`` on 2 ranks in the background with ``H5PAR_FAULT=fault``."""
    cmd = command("job.toml", "--set", "run.file_parallel_below=0")
    return mpitools.background(cmd, folder, {**env, "H5PAR_FAULT": fault})


def wait_until_working(
    mpitools, folder: Path, proc: subprocess.Popen[str], limit: float = 60
) -> None:
    """Return once the run has started its data pass (its journal exists)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        if (folder / "journal.json").is_file():
            return
        time.sleep(0.05)
    code, out, err = mpitools.finish(proc, 10)
    pytest.fail(f"the first run never started working (exit {code})\n{out}\n{err}")


def owner_record(folder: Path) -> dict:
    """The owner record in the work folder's lock file ({} when there is none)."""
    try:
        return json.loads((folder / "lock").read_text() or "{}")
    except (OSError, ValueError):
        return {}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("locking", ["HDF5 locking on", "HDF5_USE_FILE_LOCKING=FALSE"])
@pytest.mark.parametrize("output", OUTPUTS, ids=str)
def test_a_second_run_of_a_running_job_is_refused_at_once(
    mpitools, tmp_path, output, locking
) -> None:
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"] = np.ones(N)
    (tmp_path / "job.toml").write_text(JOB.format(output=OUTPUTS[output][0]))
    destination = tmp_path / OUTPUTS[output][1]
    folder = destination.parent / f".{destination.name}.h5par"
    env = mpitools.mpi_env({"HDF5_USE_FILE_LOCKING": "FALSE"} if "FALSE" in locking else None)
    first = start(mpitools, tmp_path, env, "kernel:*:delay=0.8")
    try:
        wait_until_working(mpitools, folder, first)
        owner = owner_record(folder)
        began = time.monotonic()
        second = start(mpitools, tmp_path, env, "kernel:*:delay=0.3")
        code, out, err = mpitools.finish(second, 120)
        seconds = time.monotonic() - began
        status = mpitools.launch(
            [sys.executable, "-m", "h5par", "status", "job.toml"], cwd=tmp_path, env=env, timeout=60
        )
        assert first.poll() is None, "the first run ended before the second was refused"
    finally:
        first_code, first_out, first_err = mpitools.finish(first, 180)
    lines = [line for line in err.splitlines() if line.startswith("h5par:")]
    assert code == 2 and out.count("EXIT 2") == 2, (code, out, err)
    assert len(lines) == 1, err
    assert folder.name in lines[0] and "another h5par run is working" in lines[0], lines[0]
    assert owner and f"pid {owner['pid']} on {owner['host']}" in lines[0], (owner, lines[0])
    assert first_code == 0 and first_out.count("EXIT 0") == 2, (first_out, first_err)
    assert "running: " in status.stdout, status
    assert f"; pid {owner['pid']} on {owner['host']} since" in status.stdout, status
    assert "resumed" not in first_out + out
    print(f"[{output}, {locking}] refused after {seconds:.1f} s: {lines[0]}")
    with h5py.File(destination, "r") as f:
        assert (f["x"][...] == 2.0).all()  # scaled once, by the first run alone
    with h5py.File(tmp_path / "data.h5", "r") as f:
        assert (f["x"][...] == (2.0 if output == "in place" else 1.0)).all()
    assert not folder.exists()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("output", OUTPUTS, ids=str)
def test_a_run_whose_checks_passed_before_another_finished_does_not_redo_it(
    mpitools, tmp_path, output
) -> None:
    # B passes its checks first (nothing runs yet), then waits (inspect:*:delay, before it
    # takes the lock) while A runs the whole job; B must not scale the file a second time
    # or replace A's new output without overwrite.
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"] = np.ones(N)
    (tmp_path / "job.toml").write_text(JOB.format(output=OUTPUTS[output][0]))
    destination = tmp_path / OUTPUTS[output][1]
    env = mpitools.mpi_env()
    late = start(mpitools, tmp_path, env, "inspect:*:delay=16")
    try:
        time.sleep(8)  # B is past its checks (slow starts under load), in the delay
        assert late.poll() is None
        code, out, err = mpitools.finish(start(mpitools, tmp_path, env, "kernel:*:delay=0.0"), 120)
        assert code == 0, out + err
        assert late.poll() is None, "B ended before A finished: the case was not made"
        finished = destination.stat().st_ino
    finally:
        late_code, late_out, late_err = mpitools.finish(late, 120)
    lines = [line for line in late_err.splitlines() if line.startswith("h5par:")]
    assert late_code == 2 and len(lines) == 1, late_out + late_err
    assert "meanwhile" in lines[0], lines[0]
    with h5py.File(destination, "r") as f:
        assert (f["x"][...] == 2.0).all()  # scaled once
    assert destination.stat().st_ino == finished  # A's output, not replaced
    assert not (destination.parent / f".{destination.name}.h5par").exists()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("output", OUTPUTS, ids=str)
def test_the_lock_itself_refuses_a_run_whose_checks_passed_before_the_other_started(
    mpitools, tmp_path, output
) -> None:
    # B passes its checks while nothing runs, then waits (before it takes the lock) while A
    # starts and takes it: B's own attempt to lock (rank 0, before resuming or starting)
    # must refuse it, and A must end as if alone.
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"] = np.ones(N)
    (tmp_path / "job.toml").write_text(JOB.format(output=OUTPUTS[output][0]))
    destination = tmp_path / OUTPUTS[output][1]
    folder = destination.parent / f".{destination.name}.h5par"
    env = mpitools.mpi_env()
    late = start(mpitools, tmp_path, env, "inspect:*:delay=12")
    try:
        time.sleep(6)  # B is past its checks (slow starts under load), in the delay
        first = start(
            mpitools, tmp_path, env, "kernel:*:delay=2.0"
        )  # 16 s of steps: still working when B tries, under load
        try:
            wait_until_working(mpitools, folder, first)
            code, out, err = mpitools.finish(late, 120)
            assert first.poll() is None, "A ended before B tried the lock: the case was not made"
        finally:
            first_code, first_out, first_err = mpitools.finish(first, 180)
    finally:
        if late.poll() is None:
            mpitools.finish(late, 60)
    lines = [line for line in err.splitlines() if line.startswith("h5par:")]
    assert code == 2 and out.count("EXIT 2") == 2 and len(lines) == 1, out + err
    assert "another h5par run is working in" in lines[0] and "create output" in lines[0], lines
    assert first_code == 0, first_out + first_err
    with h5py.File(destination, "r") as f:
        assert (f["x"][...] == 2.0).all()
    assert not folder.exists()
