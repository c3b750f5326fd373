"""`h5par submit` and the batch scripts, against a real one-node SLURM started here.

The session fixture installs the Debian packages when they are missing (root; skipped only
when that is impossible), starts munged if none answers, writes a one-node slurm.conf into
a temporary folder, starts slurmctld and slurmd on free ports and stops them all at the end.
Jobs take their environment from ``h5par submit`` (sbatch's default ``--export=ALL``):
``H5PAR_FAULT=write:*:delay=...`` makes a small job last long enough to be stopped.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from h5par.app.slurm import REPOSITORY_SLURM, TEMPLATES, batch_script
from h5par.engine.journal import Journal

REPO = Path(__file__).resolve().parents[2]
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL"}
TOOLS = SimpleNamespace()  # launch() and mpi_env() from conftest


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
file_parallel_below = 1
"""


def run(cmd: list[str], timeout: float = 60, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )


# -- the SLURM the tests use ------------------------------------------------------------


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="session")
def slurm(tmp_path_factory, cluster_script) -> Iterator[SimpleNamespace]:
    """A running one-node SLURM: ``env`` has SLURM_CONF for the client commands."""
    if os.geteuid() != 0:
        pytest.skip("a private SLURM needs root (slurmd runs as root)")
    try:
        cluster_script.install_slurm()
        munged = cluster_script.start_munge()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    folder = tmp_path_factory.mktemp("slurm")
    host = socket.gethostname().split(".")[0]
    conf = folder / "slurm.conf"
    ctld_port, slurmd_port = _free_ports(2)
    cluster_script.write_slurm_conf(conf, {host: "127.0.0.1"}, (ctld_port, slurmd_port))
    env = dict(os.environ, SLURM_CONF=str(conf))
    daemons = []
    try:
        for name in ("slurmctld", "slurmd"):
            program = shutil.which(name) or f"/usr/sbin/{name}"
            with (folder / f"{name}.stderr").open("w") as stderr:
                daemons.append(
                    subprocess.Popen(
                        [program, "-D", "-f", str(conf)],
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=stderr,
                        start_new_session=True,
                    )
                )
        deadline = time.monotonic() + 60
        while True:
            states = run(["sinfo", "-h", "-o", "%T"], timeout=10, env=env).stdout.split()
            if "idle" in states:
                break
            dead = [d.args[0] for d in daemons if d.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = {p.name: p.read_text()[-2000:] for p in folder.glob("*.log")}
                pytest.fail(f"SLURM did not come up (node {states}, died {dead}): {logs}")
            time.sleep(0.5)
        yield SimpleNamespace(env=env, folder=folder)
    finally:
        queued = run(["squeue", "-h", "-o", "%i"], timeout=10, env=env).stdout.split()
        if queued:
            run(["scancel", *queued], timeout=10, env=env)
            deadline = time.monotonic() + 30
            while run(["squeue", "-h"], timeout=10, env=env).stdout.strip():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        for daemon in reversed(daemons):
            cluster_script.stop(daemon)
        cluster_script.stop(munged)


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _tools(mpitools) -> None:
    TOOLS.launch, TOOLS.mpi_env = mpitools.launch, mpitools.mpi_env


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """The input, the job, and the output of an uninterrupted local run on 2 ranks."""
    folder = tmp_path_factory.mktemp("clean")
    rng = np.random.default_rng(11)
    with h5py.File(folder / "in.h5", "w") as f:
        f["x"] = rng.normal(size=(2000, 512))
    (folder / "job.toml").write_text(JOB)
    cmd = ["mpirun", "--oversubscribe", "-n", "2", sys.executable, "-m", "h5par", "run", "job.toml"]
    done = TOOLS.launch(cmd, cwd=folder, env=TOOLS.mpi_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    return folder


@pytest.fixture
def work(clean, tmp_path) -> Path:
    for name in ("in.h5", "job.toml"):
        shutil.copy(clean / name, tmp_path / name)
    return tmp_path


def h5par(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "h5par", *args], timeout=60, cwd=cwd, env=env)


def submit(work: Path, slurm, fault: str | None, *args: str) -> str:
    env = TOOLS.mpi_env({"SLURM_CONF": slurm.env["SLURM_CONF"]})
    env["PATH"] = "/usr/bin:" + env.get("PATH", "")
    env.pop("H5PAR_FAULT", None)
    if fault:
        env["H5PAR_FAULT"] = fault
    done = h5par(["submit", "job.toml", "--ntasks", "2", *args], work, env)
    assert done.returncode == 0, done.stderr
    jobid = re.fullmatch(r"submitted SLURM job (\d+)", done.stdout.splitlines()[0])
    assert jobid, done.stdout
    assert (work / ".job.slurm-jobid").read_text().strip() == jobid.group(1)
    assert f"log: {work / f'job-{jobid.group(1)}.out'}" in done.stdout
    return jobid.group(1)


def job_fields(jobid: str, slurm) -> dict[str, str]:
    shown = run(["scontrol", "show", "job", "-o", jobid], timeout=10, env=slurm.env)
    assert shown.returncode == 0, shown.stderr
    return dict(re.findall(r"(\w+)=(\S*)", shown.stdout))


def wait_for_end(jobid: str, slurm, timeout: float) -> dict[str, str]:
    """The job's fields once it has finished for good (no longer running or completing)."""
    deadline = time.monotonic() + timeout
    while True:
        fields = job_fields(jobid, slurm)
        if fields["JobState"] in FINAL:
            return fields
        if time.monotonic() > deadline:
            run(["scancel", jobid], timeout=10, env=slurm.env)
            pytest.fail(f"job {jobid} still {fields['JobState']} after {timeout} s")
        time.sleep(0.5)


def log_of(work: Path, jobid: str) -> str:
    return (work / f"job-{jobid}.out").read_text()


def same_data(a: Path, b: Path) -> bool:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        return fa["x"][...].tobytes() == fb["x"][...].tobytes()


def equals_numpy(work: Path) -> bool:
    with h5py.File(work / "in.h5", "r") as f, h5py.File(work / "out.h5", "r") as g:
        return g["x"][...].tobytes() == np.clip(f["x"][...], 0.0, None).tobytes()


def wait_for_progress(work: Path, jobid: str, slurm, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        journal = Journal.load(work / ".out.h5.h5par")
        if journal is not None and journal.done:
            return
        state = job_fields(jobid, slurm)["JobState"]
        if state in FINAL:
            logs = "\n".join(p.read_text() for p in work.glob("job-*.out"))
            pytest.fail(f"job {jobid} ended {state} before any progress:\n{logs}")
        time.sleep(0.2)
    run(["scancel", jobid], timeout=10, env=slurm.env)
    pytest.fail(f"job {jobid} recorded no progress in {timeout} s")


# -- tests needing no SLURM -------------------------------------------------------------


def test_templates_in_the_repository_are_the_generators_output() -> None:
    assert REPOSITORY_SLURM == REPO / "slurm"  # where python -m h5par.app.slurm writes
    for name, options in TEMPLATES.items():
        text = (REPO / "slurm" / name).read_text()
        assert text == batch_script(options), (
            f"slurm/{name} differs from h5par.app.slurm.batch_script: run `python -m h5par.app.slurm`"
        )
        assert run(["bash", "-n", str(REPO / "slurm" / name)], timeout=10).returncode == 0
        for needed in (
            "#SBATCH --signal=B:USR1@120",
            "#SBATCH --requeue",
            "#SBATCH --open-mode=append",
            "export HDF5_USE_FILE_LOCKING=FALSE",
            "lfs setstripe -c -1",
            'scontrol requeue "$SLURM_JOB_ID"',
            "-m mpi4py -m h5par run",
            "module load",
            "activate",
        ):
            assert needed in text, (name, needed)


def test_the_script_template_is_package_data_and_every_placeholder_is_filled() -> None:
    """An installed h5par (a wheel, not this checkout) must carry templates/job.sbatch."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["h5par.app"]
    app = REPO / "h5par" / "app"
    shipped = sorted(p.relative_to(app) for p in (app / "templates").iterdir())
    assert shipped and all(any(p.match(g) for g in globs) for p in shipped), (shipped, globs)
    for options in TEMPLATES.values():  # no placeholder left unfilled, no brace left over
        assert not re.search(r"\{[a-z_]+\}", batch_script(options))


def test_dry_run_prints_a_script_with_the_chosen_options(work) -> None:
    args = ["submit", "job.toml", "--nodes", "2", "--ntasks", "4", "--time", "1-01:30:00"]
    args += ["--partition", "debug", "--account", "proj", "--launcher", "srun"]
    args += ["--stop-before", "300", "--set", "run.memory=1MiB", "--dry-run"]
    done = h5par(args, work, TOOLS.mpi_env())
    assert done.returncode == 0, done.stderr
    script = done.stdout
    for line in (
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks=4",
        "#SBATCH --time=1-01:30:00",
        "#SBATCH --partition=debug",
        "#SBATCH --account=proj",
        "#SBATCH --signal=B:USR1@300",
        f"#SBATCH --output={work / 'job-%j.out'}",
        f"#SBATCH --chdir={work}",
        f"PYTHON={sys.executable}",
        f"JOB={work / 'job.toml'}",
        "LAUNCHER=srun",
        "RUN_ARGS=(--set run.memory=1MiB)",
    ):
        assert line in script.splitlines(), line
    assert "source " not in script and "module load" not in script  # h5par's own python
    assert sorted(p.name for p in work.iterdir()) == ["in.h5", "job.toml"]  # nothing written
    (work / "check.sbatch").write_text(script)
    assert run(["bash", "-n", str(work / "check.sbatch")], timeout=10).returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ntasks", "0"], "--ntasks '0': expected a whole number of at least 1"),
        (["--ntasks", "two"], "--ntasks 'two': expected a whole number of at least 1"),
        (["--nodes", "2", "--ntasks", "1"], "--ntasks 1 is fewer than --nodes 2"),
        (["--time", "90"], "--time '90': expected HH:MM:SS or D-HH:MM:SS"),
        (["--time", "00:75:00"], "--time '00:75:00': expected HH:MM:SS"),
        (["--time", "00:01:00"], "--stop-before 120 s is not shorter than --time 00:01:00"),
        (["--stop-before", "-5"], "--stop-before '-5': expected a whole number of at least 1"),
        (["--launcher", "slurm"], "--launcher 'slurm': expected one of mpirun, srun"),
        (["--partition", "a b"], "--partition 'a b': expected a SLURM name"),
        (["--set", "run.memory=lots"], "lots"),
    ],
    ids=lambda v: v if isinstance(v, str) else " ".join(v),
)
def test_bad_arguments_give_one_error_line_and_exit_2(work, args, message) -> None:
    done = h5par(["submit", "job.toml", *args], work, TOOLS.mpi_env())
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("h5par: error: ") and message in line, line
    assert sorted(p.name for p in work.iterdir()) == ["in.h5", "job.toml"]


def test_without_sbatch_submit_says_slurm_is_not_installed(work) -> None:
    env = dict(TOOLS.mpi_env(), PATH=str(work / "no-such-bin"))
    done = h5par(["submit", "job.toml", "--ntasks", "2"], work, env)
    assert done.returncode == 2
    assert done.stderr == (
        "h5par: error: sbatch not found: SLURM is not installed here (h5par submit --dry-run "
        "prints the batch script without submitting it)\n"
    )
    assert sorted(p.name for p in work.iterdir()) == ["in.h5", "job.toml"]


# -- tests against the real SLURM -------------------------------------------------------


@pytest.mark.timeout(420)
@pytest.mark.parametrize("launcher", ["mpirun", "srun"])
def test_submitted_job_runs_on_2_tasks_and_equals_numpy(slurm, work, launcher) -> None:
    jobid = submit(work, slurm, None, "--launcher", launcher, "--time", "00:10:00")
    fields = wait_for_end(jobid, slurm, timeout=120)
    log = log_of(work, jobid)
    assert fields["JobState"] == "COMPLETED" and fields["ExitCode"] == "0:0", log
    assert "on 2 rank(s)" in log, log
    assert equals_numpy(work)
    script = (work / "job.sbatch").read_text()
    assert f"LAUNCHER={launcher}" in script and f"PYTHON={sys.executable}" in script
    status = h5par(["status", "job.toml"], work, slurm.env)
    assert status.stdout.splitlines() == [
        "in.h5 -> out.h5: done",
        f"SLURM job {jobid}: COMPLETED, exit code 0:0; log {work / f'job-{jobid}.out'}",
    ], status.stderr


@pytest.mark.timeout(420)
@pytest.mark.parametrize("launcher", ["mpirun", "srun"])
def test_time_limit_warning_stops_requeues_and_resumes_bitwise(
    slurm, work, clean, launcher
) -> None:
    # ~63 steps of 1 s per rank: longer than the moment the warning comes. SLURM checks
    # limits every 30 s and warns when the limit is within the lead + 30 s, so with a
    # 60 s limit and a 10 s lead USR1 arrives 20-50 s after the start; the requeued job
    # waits cred_expire (10 s) and finishes the rest within its own minute.
    args = ("--launcher", launcher, "--time", "00:01:00", "--stop-before", "10")
    jobid = submit(work, slurm, "write:*:delay=1.0", *args)
    fields = wait_for_end(jobid, slurm, timeout=360)
    log = log_of(work, jobid)
    assert fields["JobState"] == "COMPLETED" and fields["ExitCode"] == "0:0", log
    assert int(fields["Restarts"]) >= 1, log
    assert "h5par: stopped on SIGUSR1 at a block boundary" in log, log
    assert f"requeueing job {jobid} to resume" in log, log
    assert "(restart 1)" in log and "resumed:" in log, log
    assert not (work / ".out.h5.h5par").exists()
    assert same_data(work / "out.h5", clean / "out.h5")
    assert equals_numpy(work)


@pytest.mark.timeout(420)
@pytest.mark.parametrize("launcher", ["mpirun", "srun"])
def test_scancel_leaves_a_stopped_run_that_a_new_submit_resumes(
    slurm, work, clean, launcher
) -> None:
    jobid = submit(work, slurm, "write:*:delay=0.2", "--launcher", launcher, "--time", "00:10:00")
    wait_for_progress(work, jobid, slurm)
    status = h5par(["status", "job.toml"], work, slurm.env)
    lines = status.stdout.splitlines()
    assert lines[0].startswith("in.h5 -> out.h5: running: "), lines
    assert re.match(rf"SLURM job {jobid}: RUNNING for \S+ of 00:10:00; log ", lines[1]), lines
    cancelled = run(["scancel", jobid], timeout=10, env=slurm.env)
    assert cancelled.returncode == 0, cancelled.stderr
    fields = wait_for_end(jobid, slurm, timeout=60)
    log = log_of(work, jobid)
    assert fields["JobState"] == "CANCELLED" and fields["Restarts"] == "0", log
    assert "requeueing job" not in log
    if launcher == "srun":  # srun passes SIGTERM on: h5par stops at a block boundary
        assert "h5par: stopped on SIGTERM at a block boundary" in log, log
        assert "not requeued; submit this script again to resume" in log, log
    # (mpirun kills its ranks on SIGTERM: the run resumes from its last journal entry)
    assert not (work / "out.h5").exists()
    assert (work / ".out.h5.h5par" / "journal.json").is_file()
    status = h5par(["status", "job.toml"], work, slurm.env)
    lines = status.stdout.splitlines()
    assert lines[0].startswith("in.h5 -> out.h5: stopped (rerun the job to resume): "), lines
    assert lines[1].startswith(f"SLURM job {jobid}: CANCELLED, exit code "), lines
    again = submit(work, slurm, None, "--launcher", launcher)
    fields = wait_for_end(again, slurm, timeout=120)
    log = log_of(work, again)
    assert fields["JobState"] == "COMPLETED" and fields["ExitCode"] == "0:0", log
    assert "resumed:" in log, log
    assert same_data(work / "out.h5", clean / "out.h5")


def test_status_without_a_submitted_job_has_no_slurm_line(work) -> None:
    done = h5par(["status", "job.toml"], work, TOOLS.mpi_env())
    assert done.stdout == "in.h5 -> out.h5: not started\n", done.stderr


def test_status_names_a_job_slurm_no_longer_knows(slurm, work) -> None:
    (work / ".job.slurm-jobid").write_text("999999\n")
    done = h5par(["status", "job.toml"], work, slurm.env)
    assert done.stdout.splitlines()[1].startswith("SLURM job 999999: no longer known to SLURM ("), (
        done.stdout
    )


@pytest.mark.timeout(420)
def test_a_job_in_an_odd_folder_runs_there_and_logs_next_to_it(slurm, work) -> None:
    # Spaces, quotes, #, $() and backticks reach sbatch (#SBATCH --chdir/--output, quoted
    # by its own rules) and bash (JOB=, RUN_ARGS=, shell-quoted): nothing runs but h5par.
    folder = work / "odd 's $(touch PWNED) `touch PWNED` #x"
    folder.mkdir()
    shutil.copy(work / "in.h5", folder / "in.h5")
    job = folder / "clip 's #1.toml"
    job.write_text(JOB)
    env = TOOLS.mpi_env({"SLURM_CONF": slurm.env["SLURM_CONF"]})
    env["PATH"] = "/usr/bin:" + env.get("PATH", "")
    env.pop("H5PAR_FAULT", None)
    output = "out 's $(touch PWNED).h5"
    args = ["submit", str(job), "--ntasks", "2", "--time", "00:10:00"]
    done = h5par([*args, "--set", f"output.path={output}"], work, env)
    assert done.returncode == 0, done.stderr
    jobid = re.fullmatch(r"submitted SLURM job (\d+)", done.stdout.splitlines()[0])
    assert jobid, done.stdout
    fields = wait_for_end(jobid.group(1), slurm, timeout=120)
    log = folder / f"{job.stem}-{jobid.group(1)}.out"
    assert log.is_file(), (fields, sorted(p.name for p in folder.iterdir()))
    assert fields["JobState"] == "COMPLETED" and fields["ExitCode"] == "0:0", log.read_text()
    with h5py.File(work / "in.h5", "r") as f, h5py.File(folder / output, "r") as g:
        assert g["x"][...].tobytes() == np.clip(f["x"][...], 0.0, None).tobytes()
    assert not [p for p in work.rglob("*") if p.name == "PWNED"]
