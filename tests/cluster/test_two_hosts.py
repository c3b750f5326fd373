"""h5par on two hosts (n1, n2) simulated by scripts/cluster.py: Open MPI over TCP between them.

Each run starts ``mpirun`` on n1 with the cluster's launch agent (``plm_rsh_agent``), which
enters n2 as ``ssh`` would; ranks on n2 get only what ``mpirun -x`` passes on. The data are
in pytest's temporary folders, which both hosts share; each host's ``/tmp`` is its own.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from h5par.engine.journal import Journal

pytestmark = pytest.mark.timeout(240)

JOB = """version = 1
[input]
path = "in.h5"
[output]
path = "{output}"
[[kernels]]
name = "clip"
min = 0.0
[run]
memory = "256KiB"
"""
#: Both hosts, two ranks each: ranks 0-1 on n1, 2-3 on n2.
BOTH = {"n1": 2, "n2": 2}


@pytest.fixture(scope="module")
def clean(tmp_path_factory, mpitools) -> Path:
    """The input, the job, and the output of one process on this machine (no cluster)."""
    folder = tmp_path_factory.mktemp("clean")
    rng = np.random.default_rng(21)
    with h5py.File(folder / "in.h5", "w") as f:
        f["x"] = rng.normal(size=(3000, 512))
        f.create_dataset("g", data=rng.normal(size=(600, 300)).astype("f4"), chunks=(50, 300),
                         compression="gzip")  # fmt: skip
    (folder / "job.toml").write_text(JOB.format(output="out.h5"))
    done = mpitools.launch(
        [sys.executable, "-m", "h5par", "run", "job.toml"], cwd=folder, env=mpitools.mpi_env()
    )
    assert done.returncode == 0, done.stderr
    with h5py.File(folder / "in.h5", "r") as f, h5py.File(folder / "out.h5", "r") as g:
        for name in ("x", "g"):
            assert g[name][...].tobytes() == np.clip(f[name][...], 0.0, None).tobytes()
    return folder


def command(hosts, ranks: dict[str, int], *args: str, env: tuple[str, ...] = ()) -> list[str]:
    """``mpirun`` over ``ranks`` running ``h5par ARGS``; ``env`` names variables passed on."""
    passed = [a for name in ("PYTHONPATH", *env) for a in ("-x", name)]
    h5par = [sys.executable, "-m", "mpi4py", "-m", "h5par", *args]
    return [*hosts.cluster.mpirun(ranks), *passed, *h5par]


def environment(mpitools, **extra: str) -> dict[str, str]:
    env = mpitools.mpi_env(extra)
    env.setdefault("PYTHONPATH", "")
    return env


def same_output(a: Path, b: Path) -> bool:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        return all(fa[n][...].tobytes() == fb[n][...].tobytes() for n in ("x", "g"))


def wait_for_progress(work: Path, proc, timeout: float = 60) -> None:
    """Until the journal records a finished unit (fails if ``proc`` ends first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        journal = Journal.load(work / ".out.h5.h5par")
        if journal is not None and journal.done:
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended before any progress: {proc.communicate()[1]}")
        time.sleep(0.1)
    pytest.fail(f"no progress in {timeout} s")


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("h5par")]


def rx_bytes(hosts, host: str) -> int:
    """Bytes host ``host`` has received on its network interface."""
    shown = hosts.on(host, ["ip", "-s", "-o", "link", "show", "eth0"], cwd=Path("/"))
    return int(re.search(r"RX:.*?\\\s+(\d+)", shown.stdout).group(1))


def test_info_names_both_hosts_and_leaves_messaging_to_open_mpi(hosts, work, mpitools) -> None:
    done = hosts.on("n1", command(hosts, BOTH, "info"), work, environment(mpitools))
    assert done.returncode == 0, done.stderr
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in done.stdout.splitlines())
    assert rows["ranks"] == "4"
    assert rows["hosts"] == "2: n1 (ranks 0-1), n2 (ranks 2-3)"
    assert rows["MPI messaging layer"] == "Open MPI's choice"  # no ob1 across hosts
    one = hosts.on("n2", command(hosts, {"n2": 3}, "info"), work, environment(mpitools))
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in one.stdout.splitlines())
    assert rows["hosts"] == "1: n2", one.stderr
    assert rows["MPI messaging layer"] == "ob1 (set by h5par: every rank on one node)"


def test_a_run_across_two_hosts_equals_one_process_bitwise(hosts, work, clean, mpitools) -> None:
    before = rx_bytes(hosts, "n2")
    done = hosts.on("n1", command(hosts, BOTH, "run", "job.toml"), work, environment(mpitools))
    assert done.returncode == 0, done.stderr
    assert "on 4 rank(s) of 2 hosts" in done.stdout, done.stdout
    assert same_output(work / "out.h5", clean / "out.h5")
    assert rx_bytes(hosts, "n2") - before > 10_000  # n2's ranks talked over TCP


def test_a_rank_failing_on_the_second_host_is_named_in_one_line(hosts, work, mpitools) -> None:
    env = environment(mpitools, H5PAR_FAULT="write:3:raise:2")
    cmd = command(hosts, BOTH, "run", "job.toml", env=("H5PAR_FAULT",))
    done = hosts.on("n1", cmd, work, env)
    assert done.returncode == 1, done.stderr
    (line,) = error_lines(done.stderr)
    assert "injected fault at write on rank 3" in line and "rank 3 of 4 on n2]" in line, line
    assert not (work / "out.h5").exists()


#: Each host's own folder: /tmp is node-local on the simulated hosts.
LOCAL = Path("/tmp/h5par-node-local")


def make_small_files(folder: Path, values: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(4):
        with h5py.File(folder / f"s{i}.h5", "w") as f:
            f["x"] = np.full((10, 8), values + i)
            f["time"] = [float(i)]


def each_host(hosts, work: Path, argv: list[str]) -> None:
    for host in BOTH:
        done = hosts.on(host, argv, work)
        assert done.returncode == 0, (host, done.stderr)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("output", f"output folder '{LOCAL}' is not shared by every host"),
        ("small-outputs", f"output folder '{LOCAL}' is not shared by every host"),
        ("in-place", f"input folder '{LOCAL}' is not shared by every host"),
        ("input", f"input '{LOCAL}/in.h5' is not shared by every host: another file here"),
        ("missing-input", f"input.path '{LOCAL}/in.h5': no such file"),  # found by validation
        ("series", f"input '{LOCAL}/s2.h5' is not shared by every host: missing here"),
        ("other-file", f"input '{LOCAL}/in.h5' is not shared by every host: another file here"),
        ("job-file", "the job differs on this host from n1's: its job file or a kernel's module"),
    ],
)
def test_files_a_host_does_not_share_are_refused_before_any_write(
    hosts, work, mpitools, where, message
) -> None:
    # Without the check: a run that hung (one output, or one input that differs), or
    # small files' outputs scattered over the hosts' /tmp with exit status 0.
    each_host(hosts, work, ["sh", "-c", f"rm -rf {LOCAL} && mkdir -p {LOCAL}"])
    job = JOB.format(output=LOCAL / "out.h5")
    if where == "small-outputs":
        make_small_files(work / "small", 1.0)
        job = job.replace('path = "in.h5"', 'path = "small/s*.h5"')
        job = job.replace(f'path = "{LOCAL}/out.h5"', f'path = "{LOCAL}/{{stem}}_out.h5"')
    elif where == "in-place":
        job = job.replace('path = "in.h5"', f'path = "{LOCAL}/in.h5"')
        job = job.replace(f'path = "{LOCAL}/out.h5"', "in_place = true")
    elif where in ("input", "missing-input"):
        job = JOB.format(output="out.h5").replace('path = "in.h5"', f'path = "{LOCAL}/in.h5"')
    elif where == "series":
        job = JOB.format(output="out.h5").replace(
            'path = "in.h5"', f'path = "{LOCAL}/s*.h5"\ncombine = "concat"'
        )
    elif where == "other-file":  # a derived dataset reads another file
        job = JOB.format(output="out.h5") + (
            f'[[derived]]\npath = "/anomaly"\nexpression = "x - c"\n'
            f'inputs = {{ x = "/x", c = "{LOCAL}/in.h5:/x" }}\n'
        )
    (work / "job.toml").write_text(job)
    run = ["run", "job.toml"]
    if where == "job-file":  # each host has its own job file: clip at 0 on n1, at 1 on n2
        job = JOB.format(output=work / "out.h5").replace('"in.h5"', f'"{work / "in.h5"}"')
        for host, low in (("n1", "0.0"), ("n2", "1.0")):
            text = job.replace("min = 0.0", f"min = {low}")
            write = ["sh", "-c", f"cat > {LOCAL}/job.toml"]
            cmd = hosts.cluster.command(host, write, work)
            assert subprocess.run(cmd, input=text, text=True, check=False).returncode == 0
        run = ["run", f"{LOCAL}/job.toml"]
    copy = ["cp", "-p", str(work / "in.h5"), f"{LOCAL}/in.h5"]
    if where in ("in-place", "input", "missing-input", "other-file"):
        assert hosts.on("n1", copy, work).returncode == 0
    if where == "in-place":  # n2 has a copy of the same size and time: its folder differs
        assert hosts.on("n2", copy, work).returncode == 0
    if where in ("input", "other-file"):  # n2 has a copy of the same size, written later
        time.sleep(0.01)
        assert hosts.on("n2", copy[:1] + copy[2:], work).returncode == 0
    if where == "series":  # n2 lacks the last two dumps
        make_small_files(work / "dumps", 1.0)
        for host, count in (("n1", 4), ("n2", 2)):
            files = [str(work / "dumps" / f"s{i}.h5") for i in range(count)]
            assert hosts.on(host, ["cp", "-p", *files, str(LOCAL)], work).returncode == 0
    before = {h: hosts.on(h, ["ls", "-A", str(LOCAL)], work).stdout for h in BOTH}
    done = hosts.on("n1", command(hosts, BOTH, *run), work, environment(mpitools))
    assert done.returncode == 2, done.stderr
    (line,) = error_lines(done.stderr)
    assert message in line and "rank 2 of 4 on n2" in line, line
    for host in BOTH:  # nothing written, nothing left
        assert hosts.on(host, ["ls", "-A", str(LOCAL)], work).stdout == before[host], host
    assert sorted(p.name for p in work.iterdir() if p.name.startswith(".")) == []


def test_info_shows_a_variable_mpirun_did_not_pass_on(hosts, work, mpitools) -> None:
    env = environment(mpitools, HDF5_USE_FILE_LOCKING="FALSE")
    done = hosts.on("n1", command(hosts, BOTH, "info"), work, env)
    assert done.returncode == 0, done.stderr
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in done.stdout.splitlines())
    unset = "unset (HDF5 default: locking on)"
    assert rows["HDF5_USE_FILE_LOCKING"] == f"FALSE (ranks 0-1), {unset} (ranks 2-3)"
    passed = command(hosts, BOTH, "info", env=("HDF5_USE_FILE_LOCKING",))
    done = hosts.on("n1", passed, work, env)
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in done.stdout.splitlines())
    assert rows["HDF5_USE_FILE_LOCKING"] == "FALSE", done.stderr


@pytest.mark.parametrize("locking", ["unset", "FALSE"])
def test_a_second_run_from_the_other_host_is_refused(hosts, work, clean, mpitools, locking) -> None:
    extra = {} if locking == "unset" else {"HDF5_USE_FILE_LOCKING": locking}
    env = environment(mpitools, H5PAR_FAULT="write:*:delay=0.2", **extra)
    names = ("H5PAR_FAULT", *extra)
    first = hosts.on(
        "n1", command(hosts, BOTH, "run", "job.toml", env=names), work, env, background=True
    )
    wait_for_progress(work, first)
    second = hosts.on("n2", [sys.executable, "-m", "h5par", "run", "job.toml"], work,
                      environment(mpitools, **extra))  # fmt: skip
    assert second.returncode == 2, second.stderr
    (line,) = error_lines(second.stderr)
    assert re.search(
        r"another h5par run is working in .*\.out\.h5\.h5par \(pid \d+ on n1 since", line
    ), line
    code, _, err = mpitools.finish(first, 180)
    assert code == 0, err
    assert same_output(work / "out.h5", clean / "out.h5")


def test_a_host_killed_mid_write_resumes_on_the_other_host(hosts, work, clean, mpitools) -> None:
    env = environment(mpitools, H5PAR_FAULT="write:*:delay=0.2")
    cmd = command(hosts, BOTH, "run", "job.toml", env=("H5PAR_FAULT",))
    run = hosts.on("n1", cmd, work, env, background=True)
    wait_for_progress(work, run)
    start = time.monotonic()
    hosts.cluster.kill_host("n2")
    code, out, _ = mpitools.finish(run, 60)
    assert code != 0, out
    ended = time.monotonic() - start
    assert not (work / "out.h5").exists()
    resumed = hosts.on(
        "n1", command(hosts, {"n1": 3}, "run", "job.toml"), work, environment(mpitools)
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed:" in resumed.stdout, resumed.stdout
    assert same_output(work / "out.h5", clean / "out.h5")
    assert ended < 30


def test_rank_0s_host_lost_its_lock_is_named_then_cleared_and_resumed(
    hosts, work, clean, mpitools
) -> None:
    env = environment(mpitools, H5PAR_FAULT="write:*:delay=0.2")
    cmd = command(hosts, BOTH, "run", "job.toml", env=("H5PAR_FAULT",))
    run = hosts.on("n1", cmd, work, env, background=True)
    wait_for_progress(work, run)
    hosts.cluster.kill_host("n1")  # rank 0, mpirun and the lock's owner
    mpitools.finish(run, 60)
    deadline = time.monotonic() + 30  # n2's daemon notices it lost mpirun and ends its ranks
    while hosts.on("n2", ["pgrep", "-f", "h5par run"], work).stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not hosts.on("n2", ["pgrep", "-f", "h5par run"], work).stdout
    again = hosts.on(
        "n2", command(hosts, {"n2": 2}, "run", "job.toml"), work, environment(mpitools)
    )
    assert again.returncode == 2, again.stderr
    (line,) = error_lines(again.stderr)
    assert "on n1 since" in line, line
    assert "if it no longer runs there, delete .out.h5.h5par/lock and rerun" in line, line
    (work / ".out.h5.h5par" / "lock").unlink()
    again = hosts.on(
        "n2", command(hosts, {"n2": 2}, "run", "job.toml"), work, environment(mpitools)
    )
    assert again.returncode == 0, again.stderr
    assert "resumed:" in again.stdout, again.stdout
    assert same_output(work / "out.h5", clean / "out.h5")


def test_demo_on_two_hosts_writes_where_both_see_it(hosts, tmp_path, mpitools) -> None:
    # Without a folder the demo would use rank 0's /tmp, which n2 does not see.
    done = hosts.on("n1", command(hosts, BOTH, "demo"), tmp_path, environment(mpitools))
    assert done.returncode == 0, done.stderr
    (made,) = tmp_path.glob("h5par-demo-*")
    assert (made / "demo_input_clean.h5").is_file() and "on 4 rank(s)" in done.stdout
    local = "/tmp/h5par-demo-on-n1"
    done = hosts.on("n1", command(hosts, BOTH, "demo", local), tmp_path, environment(mpitools))
    assert done.returncode == 2, done.stderr
    (line,) = error_lines(done.stderr)
    assert f"demo folder {local!r} is not seen by every rank" in line and " on n2 " in line, line
