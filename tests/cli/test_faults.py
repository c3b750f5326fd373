"""Faults that end in MPI_Abort or a signal, through ``h5par run`` under mpirun.

Each case must end within 30 s with one clear line from h5par, leave nothing under the
output's final name and the input unchanged; rerunning the job (on any rank count) gives
data bitwise equal to a clean run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from h5par.engine.journal import Journal

WRAPPER = "import sys, h5par.app.cli as c; s = c.main(sys.argv[1:]); print(f'EXIT {s}', flush=True); sys.exit(s)"
TOOLS = SimpleNamespace()  # launch() and mpi_env() from conftest, set by the autouse fixture
WATCHDOG = 4  # seconds; a failed rank gives up after half of it
LIMIT = 30  # seconds every case must end within

JOB = """version = 1
[input]
path = "in.h5"
[output]
path = "out.h5"
[[kernels]]
name = "scale"
factor = 2.5
[run]
memory = "256KiB"
file_parallel_below = 1
watchdog = {watchdog}
"""


@pytest.fixture(scope="module", autouse=True)
def _tools(mpitools) -> None:
    TOOLS.launch, TOOLS.mpi_env = mpitools.launch, mpitools.mpi_env


def launch(*args, **kwargs) -> subprocess.CompletedProcess[str]:
    return TOOLS.launch(*args, **kwargs)


def mpi_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return TOOLS.mpi_env(extra)


@pytest.fixture(scope="module")
def clean(tmp_path_factory, _tools) -> Path:
    """The input, the job, and the output of an uninterrupted run (module-wide)."""
    folder = tmp_path_factory.mktemp("clean")
    rng = np.random.default_rng(3)
    with h5py.File(folder / "in.h5", "w") as f:
        f["x"] = rng.normal(size=(1500, 512))
        f.create_dataset(
            "z", data=rng.normal(size=(800, 128)), chunks=(40, 128), compression="gzip"
        )
    (folder / "job.toml").write_text(JOB.format(watchdog=WATCHDOG))
    result = run(2, folder)
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture
def work(clean, tmp_path) -> Path:
    for name in ("in.h5", "job.toml"):
        shutil.copy(clean / name, tmp_path / name)
    return tmp_path


def command(nranks: int, *extra: str) -> list[str]:
    return [
        "mpirun",
        "--oversubscribe",
        "-n",
        str(nranks),
        sys.executable,
        "-c",
        WRAPPER,
        "run",
        "job.toml",
        *extra,
    ]


def run(
    nranks: int, folder: Path, fault: str | None = None, *extra: str
) -> subprocess.CompletedProcess[str]:
    env = mpi_env({"H5PAR_FAULT": fault} if fault else None)
    return launch(command(nranks, *extra), cwd=folder, env=env, timeout=120)


def errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("h5par:")]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def same_data(a: Path, b: Path) -> bool:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        return all(fa[k][...].tobytes() == fb[k][...].tobytes() for k in ("x", "z"))


def check_aftermath(work: Path, clean: Path, nranks: int) -> None:
    """Nothing under the final name, input intact; a rerun on ``nranks`` completes the job."""
    assert not (work / "out.h5").exists()
    assert digest(work / "in.h5") == digest(clean / "in.h5")
    rerun = run(nranks, work)
    assert rerun.returncode == 0, rerun.stderr
    assert same_data(work / "out.h5", clean / "out.h5")
    assert sorted(p.name for p in work.iterdir()) == ["in.h5", "job.toml", "out.h5"]


def timed(call):
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


@pytest.mark.parametrize(
    ("nranks", "bad"), [(n, r) for n in (2, 3, 4) for r in range(n)], ids=lambda v: str(v)
)
def test_exception_inside_the_collective_write_aborts_with_one_line(
    work, clean, nranks, bad
) -> None:
    # The others, stuck in the collective call, leave the word to the failing rank even when
    # their watchdog fires before it has aborted the job (failure notices).
    result, seconds = timed(lambda: run(nranks, work, f"collective-write:{bad}:raise:3"))
    assert result.returncode == 1, result.stderr
    (line,) = errors(result)
    assert f"injected fault at collective-write on rank {bad}" in line
    assert f"rank {bad} of {nranks}" in line and "aborting the job" in line
    assert "Traceback" not in result.stderr
    assert seconds < LIMIT
    check_aftermath(work, clean, 5 - nranks)


@pytest.mark.parametrize(("nranks", "bad"), [(2, 0), (3, 1)], ids=lambda v: str(v))
def test_a_late_failure_inside_the_collective_write_still_ends_with_its_message(
    work, nranks, bad
) -> None:
    # The failing rank is slow (3 s) before it raises: the others' watchdog (4 s, counted from
    # the start of the step) fires before the failing rank's wait (2 s) is over.
    fault = f"collective-write:{bad}:delay=3:3, collective-write:{bad}:raise:3"
    result = run(nranks, work, fault)
    assert result.returncode == 1, result.stderr
    (line,) = errors(result)
    assert f"injected fault at collective-write on rank {bad}" in line
    assert f"rank {bad} of {nranks}" in line and "made no progress" not in result.stderr


@pytest.mark.parametrize("nranks", [2, 3])
def test_a_failure_the_others_wait_for_in_a_collective_call_ends_the_job_at_once(
    work, clean, nranks
) -> None:
    # With a long watchdog the failing rank would wait 10 s for the others: the ranks stuck
    # in the collective write it left tell it so, and it aborts the job with its own message.
    bad = nranks - 1
    (work / "job.toml").write_text(JOB.format(watchdog=60))
    result, seconds = timed(lambda: run(nranks, work, f"collective-write:{bad}:raise:2"))
    assert result.returncode == 1, result.stderr
    (line,) = errors(result)
    assert f"injected fault at collective-write on rank {bad} [writing " in line
    assert f"rank {bad} of {nranks} on " in line
    assert "is inside a collective call it left; aborting the job" in line
    assert "made no progress" not in result.stderr and "Traceback" not in result.stderr
    assert seconds < 15  # launch and start included: well before the 10 s wait and the watchdog


@pytest.mark.parametrize("nranks", [2, 3, 4])
def test_a_rank_blocked_forever_is_named_by_the_watchdog(work, clean, nranks) -> None:
    bad = nranks - 1
    result, seconds = timed(lambda: run(nranks, work, f"kernel:{bad}:block:4"))
    assert result.returncode == 1, result.stderr
    (line,) = errors(result)
    assert f"rank {bad} of {nranks}" in line and "made no progress" in line
    assert f"run.watchdog = {WATCHDOG} s" in line
    assert seconds < WATCHDOG + 15
    check_aftermath(work, clean, 2)


def test_sigkill_of_one_rank_mid_write_then_resume_on_three(work, clean) -> None:
    result, seconds = timed(lambda: run(2, work, "write:1:kill:10"))
    assert result.returncode != 0 and seconds < LIMIT
    assert "exited on signal 9" in result.stderr
    journal = Journal.load(work / ".out.h5.h5par")
    assert journal is not None and journal.done, "the killed run recorded its finished units"
    status = launch([sys.executable, "-m", "h5par", "status", "job.toml"], cwd=work, env=mpi_env())
    assert "in.h5 -> out.h5: stopped (rerun the job to resume): " in status.stdout, status.stderr
    check_aftermath(work, clean, 3)
    status = launch([sys.executable, "-m", "h5par", "status", "job.toml"], cwd=work, env=mpi_env())
    assert status.stdout == "in.h5 -> out.h5: done\n"


def test_a_rank_hitting_the_file_size_limit_fails_cleanly(work, clean) -> None:
    limited = ["prlimit", "--fsize=2000000", sys.executable, "-c", WRAPPER, "run", "job.toml"]
    cmd = [
        "mpirun",
        "--oversubscribe",
        "-n",
        "1",
        sys.executable,
        "-c",
        WRAPPER,
        "run",
        "job.toml",
        ":",
        "-n",
        "1",
        *limited,
    ]
    result, seconds = timed(lambda: launch(cmd, cwd=work, env=mpi_env(), timeout=120))
    assert result.returncode == 1 and seconds < LIMIT
    (line,) = errors(result)
    assert "cannot write /x of out.h5" in line and "file-size limit" in line
    assert "rank 1 of 2" in line
    assert sorted(p.name for p in work.iterdir()) == ["in.h5", "job.toml"]  # nothing left
    check_aftermath(work, clean, 2)


def start(work: Path, nranks: int, fault: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command(nranks),
        cwd=work,
        env=mpi_env({"H5PAR_FAULT": fault}),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def wait_for_progress(work: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + LIMIT
    while time.monotonic() < deadline and proc.poll() is None:
        journal = Journal.load(work / ".out.h5.h5par")
        if journal is not None and journal.done:
            return
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("the job made no recorded progress")


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the job did not stop")
    return proc.returncode, err


@pytest.mark.parametrize("how", ["SIGTERM to every rank", "SIGUSR1 to mpirun"])
def test_stop_signal_mid_write_exits_75_and_resumes_bitwise(work, clean, how) -> None:
    proc = start(work, 2, "write:*:delay=0.05")
    wait_for_progress(work, proc)
    if how == "SIGUSR1 to mpirun":  # what `scancel --signal=USR1` or `--signal=B:USR1` do
        proc.send_signal(signal.SIGUSR1)
    else:  # what SLURM does at the time limit: every task gets SIGTERM
        ranks = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
        for pid in ranks.stdout.split():
            os.kill(int(pid), signal.SIGTERM)
    status, err = finish(proc)
    assert status == 75, err
    (line,) = [line for line in err.splitlines() if line.startswith("h5par:")]
    assert line.startswith("h5par: stopped on SIG") and "rerun the same job to resume" in line
    assert not (work / "out.h5").exists()
    resumed = launch(command(3, "--resume"), cwd=work, env=mpi_env(), timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed:" in resumed.stdout
    assert same_data(work / "out.h5", clean / "out.h5")


def test_a_rank_failing_as_a_stopped_run_resumes_keeps_its_progress(work, clean) -> None:
    # Rank 0 has taken up the stopped run's journal when rank 1 fails: the units done
    # before stay done for the next resume (a fresh start's journal is removed instead).
    stopped = run(2, work, "write:1:usr1:3")
    assert stopped.returncode == 75, stopped.stderr
    done_before = Journal.load(work / ".out.h5.h5par").count()[0]
    failed = run(2, work, "create:1:raise")
    assert failed.returncode == 1, failed.stderr
    assert "injected fault at create on rank 1" in errors(failed)[0]
    assert Journal.load(work / ".out.h5.h5par").count()[0] == done_before > 0
    resumed = run(3, work)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed: {done_before} units done before" in resumed.stdout, resumed.stdout
    assert same_data(work / "out.h5", clean / "out.h5")


def test_resume_with_nothing_to_resume_is_a_usage_error(work) -> None:
    result = run(2, work, None, "--resume")
    assert result.returncode == 2
    (line,) = errors(result)
    assert "--resume: nothing to resume for out.h5 (no earlier run was stopped)" in line
    assert sorted(p.name for p in work.iterdir()) == ["in.h5", "job.toml"]


def test_many_files_stopped_midway_resume_without_redoing_finished_files(tmp_path) -> None:
    rng = np.random.default_rng(5)
    for i in range(5):
        with h5py.File(tmp_path / f"dump_{i}.h5", "w") as f:
            f["x"] = rng.normal(size=(400, 300))
    job = JOB.format(watchdog=WATCHDOG).replace('"in.h5"', '"dump_*.h5"')
    job = job.replace('"out.h5"', '"clean/{stem}.h5"').replace("file_parallel_below = 1\n", "")
    (tmp_path / "job.toml").write_text(job)
    (tmp_path / "clean").mkdir()
    stopped = launch(command(2), cwd=tmp_path, env=mpi_env({"H5PAR_FAULT": "write:1:usr1:3"}))
    assert stopped.returncode == 75, stopped.stderr
    finished = sorted(p.name for p in tmp_path.glob("clean/*.h5"))
    assert 0 < len(finished) < 5
    stamps = {name: (tmp_path / "clean" / name).stat().st_mtime_ns for name in finished}
    resumed = launch(command(3), cwd=tmp_path, env=mpi_env())
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("[done by an earlier run of this job]") == len(finished)
    assert "resumed:" in resumed.stdout
    for i in range(5):
        with (
            h5py.File(tmp_path / f"dump_{i}.h5") as f,
            h5py.File(tmp_path / f"clean/dump_{i}.h5") as g,
        ):
            assert g["x"][...].tobytes() == (f["x"][...] * 2.5).tobytes()
    assert {name: (tmp_path / "clean" / name).stat().st_mtime_ns for name in finished} == stamps
    assert not list(tmp_path.glob("clean/.*"))  # no work folder left


def test_ctrl_c_on_one_process_keeps_the_work_folder_and_a_rerun_resumes(work, clean) -> None:
    env = mpi_env({"H5PAR_FAULT": "write:*:delay=0.05"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "h5par", "run", "job.toml", "--quiet"],
        cwd=work,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # Ctrl-C as at a terminal, however the tests were started: a background job of a
        # non-interactive shell inherits SIGINT ignored, and Python then keeps it ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for_progress(work, proc)
    proc.send_signal(signal.SIGINT)
    status, err = finish(proc)
    assert (
        status == 130
        and err.strip().splitlines()[-1] == "h5par: interrupted; rerun the same job to resume"
    )
    assert not (work / "out.h5").exists()
    resumed = launch(
        [sys.executable, "-m", "h5par", "run", "job.toml"], cwd=work, env=mpi_env(), timeout=120
    )
    assert resumed.returncode == 0 and "resumed:" in resumed.stdout, resumed.stderr
    assert same_data(work / "out.h5", clean / "out.h5")
