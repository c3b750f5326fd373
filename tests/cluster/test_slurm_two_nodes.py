"""``h5par submit --nodes 2`` on a real SLURM across two simulated hosts (scripts/cluster.py).

slurmctld runs on n1, a slurmd on n1 and on n2; sbatch, scontrol and h5par submit run on n1.
The batch script is h5par's own (slurm/multi_node.sbatch's template), with ``mpirun`` (which
starts its daemons on the other node through SLURM) or ``srun`` (PMIx) as launcher.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

pytestmark = pytest.mark.timeout(300)

JOB = """version = 1
[input]
path = "in.h5"
[output]
path = "out.h5"
[[kernels]]
name = "clip"
min = 0.0
[run]
memory = "256KiB"
"""
REPO = Path(__file__).resolve().parents[2]
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


@pytest.fixture(scope="module")
def clean(tmp_path_factory, mpitools) -> Path:
    """The input, the job, and the output of one process on this machine (no SLURM)."""
    folder = tmp_path_factory.mktemp("clean")
    with h5py.File(folder / "in.h5", "w") as f:
        f["x"] = np.random.default_rng(5).normal(size=(2000, 512))
    (folder / "job.toml").write_text(JOB)
    done = mpitools.launch(
        [sys.executable, "-m", "h5par", "run", "job.toml"], cwd=folder, env=mpitools.mpi_env()
    )
    assert done.returncode == 0, done.stderr
    return folder


def on_n1(slurm_hosts, argv: list[str], work: Path, fault: str | None = None):
    env = dict(slurm_hosts.env)
    env.pop("H5PAR_FAULT", None)
    if fault:
        env["H5PAR_FAULT"] = fault
    return slurm_hosts.on("n1", argv, work, env, timeout=60)


def submit(slurm_hosts, work: Path, *args: str, fault: str | None = None) -> str:
    """``h5par submit job.toml --nodes 2 --ntasks 4 ARGS`` on n1 (default ``--time 00:10:00``)."""
    argv = [sys.executable, "-m", "h5par", "submit", "job.toml", "--nodes", "2", "--ntasks", "4"]
    time_limit = [] if "--time" in args else ["--time", "00:10:00"]
    done = on_n1(slurm_hosts, [*argv, *time_limit, *args], work, fault)
    assert done.returncode == 0, done.stderr
    jobid = re.fullmatch(r"submitted SLURM job (\d+)", done.stdout.splitlines()[0])
    assert jobid, done.stdout
    return jobid.group(1)


def fields(slurm_hosts, jobid: str, work: Path) -> dict[str, str]:
    shown = on_n1(slurm_hosts, ["scontrol", "show", "job", "-o", jobid], work)
    assert shown.returncode == 0, shown.stderr
    return dict(re.findall(r"(\w+)=(\S*)", shown.stdout))


def wait_until(slurm_hosts, jobid: str, work: Path, done, timeout: float = 120) -> dict[str, str]:
    """The job's fields once ``done(fields)`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        now = fields(slurm_hosts, jobid, work)
        if done(now):
            return now
        if time.monotonic() > deadline:
            on_n1(slurm_hosts, ["scancel", jobid], work)
            pytest.fail(f"job {jobid} {now['JobState']} after {timeout} s: {log_of(work, jobid)}")
        time.sleep(0.2)


def log_of(work: Path, jobid: str) -> str:
    log = work / f"job-{jobid}.out"
    return log.read_text() if log.is_file() else "(no log)"


def same_output(a: Path, b: Path) -> bool:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        return fa["x"][...].tobytes() == fb["x"][...].tobytes()


@pytest.mark.parametrize("launcher", ["mpirun", "srun"])
def test_a_two_node_job_runs_on_both_hosts_bitwise(slurm_hosts, work, clean, launcher) -> None:
    jobid = submit(slurm_hosts, work, "--launcher", launcher)
    end = wait_until(slurm_hosts, jobid, work, lambda f: f["JobState"] in FINAL)
    log = log_of(work, jobid)
    assert end["JobState"] == "COMPLETED" and end["ExitCode"] == "0:0", log
    assert end["NodeList"] == "n[1-2]" and end["NumNodes"] == "2", end
    assert f"h5par: SLURM job {jobid} (restart 0) on n[1-2]" in log, log
    assert "on 4 rank(s) of 2 hosts" in log, log
    assert same_output(work / "out.h5", clean / "out.h5")


@pytest.mark.parametrize("launcher", ["mpirun", "srun"])
def test_the_repositorys_multi_node_script_as_a_user_edits_it(
    slurm_hosts, work, clean, launcher
) -> None:
    script = (REPO / "slurm" / "multi_node.sbatch").read_text()
    for line, edited in (  # the lines marked CHANGE, and the environment (h5par's python)
        ("#SBATCH --nodes=4", "#SBATCH --nodes=2"),
        ("#SBATCH --ntasks=128", "#SBATCH --ntasks=4"),
        ("#SBATCH --time=12:00:00", "#SBATCH --time=00:10:00"),
        ("PYTHON=python", f"PYTHON={sys.executable}"),
        ('JOB="$HOME/jobs/postprocess.toml"', f'JOB="{work / "job.toml"}"'),
        ("LAUNCHER=mpirun", f"LAUNCHER={launcher}"),
    ):
        assert script.count(line) == 1, line
        script = script.replace(line, edited)
    (work / "multi_node.sbatch").write_text(script)
    done = on_n1(slurm_hosts, ["sbatch", "--parsable", "multi_node.sbatch"], work)
    assert done.returncode == 0, done.stderr
    jobid = done.stdout.strip().split(";")[0]
    end = wait_until(slurm_hosts, jobid, work, lambda f: f["JobState"] in FINAL)
    log = (work / f"h5par-{jobid}.out").read_text()
    assert end["JobState"] == "COMPLETED" and end["NodeList"] == "n[1-2]", log
    assert f"h5par: SLURM job {jobid} (restart 0) on n[1-2]" in log, log
    assert "on 4 rank(s) of 2 hosts" in log, log
    assert same_output(work / "out.h5", clean / "out.h5")


def test_the_time_limit_requeues_and_resumes_on_one_node(slurm_hosts, work, clean) -> None:
    # 125 units, 2 s each, over 4 ranks: ~62 s, past the time limit's warning (USR1 20-50 s
    # after the start: SLURM checks limits every 30 s). While the requeued job waits
    # (cred_expire, 10 s), it is held, moved to one node (2 ranks) with a longer limit.
    args = ("--time", "00:01:00", "--stop-before", "10")
    jobid = submit(slurm_hosts, work, *args, fault="write:*:delay=2.0")
    requeued = lambda f: f["Restarts"] == "1" and f["JobState"] == "PENDING"  # noqa: E731
    wait_until(slurm_hosts, jobid, work, requeued, timeout=120)
    for step in (
        ["hold"],
        ["update", f"JobId={jobid}", "NumNodes=1-1", "NumTasks=2", "NumCPUs=2", "TimeLimit=10"],
        ["release"],
    ):
        done = on_n1(slurm_hosts, ["scontrol", *step, *([jobid] if len(step) == 1 else [])], work)
        assert done.returncode == 0, (step, done.stderr)
    end = wait_until(slurm_hosts, jobid, work, lambda f: f["JobState"] in FINAL, timeout=240)
    log = log_of(work, jobid)
    assert end["JobState"] == "COMPLETED" and end["ExitCode"] == "0:0", log
    assert "h5par: stopped on SIGUSR1 at a block boundary" in log, log
    assert f"requeueing job {jobid} to resume" in log, log
    assert f"h5par: SLURM job {jobid} (restart 1) on n1," in log, log
    assert "resumed:" in log and "on 2 rank(s)" in log, log
    assert same_output(work / "out.h5", clean / "out.h5")
