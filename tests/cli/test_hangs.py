"""Rank-0-only actions, slow ranks next to failing ones, and long copies (``h5par run``).

Every case runs the real command line under mpirun and checks that the job ends with the
error that caused it, every rank exits with the same status, and no work folder is left.
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

#: Each rank prints its own exit status, so that a test sees every rank's, not mpirun's.
WRAPPER = "import sys, h5par.app.cli as c; s = c.main(sys.argv[1:]); print(f'EXIT {s}', flush=True); sys.exit(s)"

JOB = """version = 1
[input]
path = "in.h5"
[output]
path = "out.h5"
[[kernels]]
{kernel}
[run]
memory = "{memory}"
file_parallel_below = 0
watchdog = {watchdog}
"""


def job(folder: Path, kernel: str, watchdog: float = 600, memory: str = "64KiB") -> None:
    (folder / "job.toml").write_text(JOB.format(kernel=kernel, watchdog=watchdog, memory=memory))


def run(
    mpitools, folder: Path, nranks: int, *extra: str, fault: str | None = None, timeout=120
) -> tuple[subprocess.CompletedProcess[str], float]:
    """``h5par run job.toml`` on ``nranks`` ranks: the result and the seconds it took."""
    cmd = ["mpirun", "--oversubscribe", "-n", str(nranks), sys.executable, "-c", WRAPPER]
    env = mpitools.mpi_env({"H5PAR_FAULT": fault} if fault else None)
    start = time.monotonic()
    result = mpitools.launch(
        [*cmd, "run", "job.toml", *extra], cwd=folder, env=env, timeout=timeout
    )
    return result, time.monotonic() - start


def statuses(result: subprocess.CompletedProcess[str]) -> list[str]:
    """Every rank's exit status (lines of several ranks may run together)."""
    return sorted(re.findall(r"EXIT \d+", result.stdout))


def errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("h5par:")]


def left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def corrupt_first_chunk(path: Path, name: str) -> None:
    """Overwrite the stored bytes of chunk 0 of dataset ``name`` (gzip cannot inflate them)."""
    with h5py.File(path, "r") as f:
        info = f[name].id.get_chunk_info(0)
    with open(path, "r+b") as raw:
        raw.seek(info.byte_offset)
        raw.write(b"\xff" * info.size)


@pytest.mark.parametrize("nranks", [2, 3])
def test_an_unreadable_broadcast_source_ends_at_once_with_the_read_error(
    mpitools, tmp_path, nranks
) -> None:
    # Rank 0 reads the source slice alone: its read error must be agreed on, not leave the
    # other ranks waiting in the broadcast until the watchdog.
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f.create_dataset("x", data=np.ones((64, 32)), chunks=(8, 32), compression="gzip")
    corrupt_first_chunk(tmp_path / "in.h5", "x")
    job(tmp_path, 'name = "broadcast"\nindex = 0')
    result, seconds = run(mpitools, tmp_path, nranks, timeout=60)
    assert result.returncode == 1, result.stderr
    assert statuses(result) == ["EXIT 1"] * nranks
    (line,) = errors(result)
    assert "broadcast source of /x" in line and "rank 0 of" in line
    assert "inflate() failed" in line, line
    assert "made no progress" not in result.stderr and "Traceback" not in result.stderr
    assert seconds < 30
    assert left(tmp_path) == ["in.h5", "job.toml"]


def small_input(folder: Path) -> None:
    with h5py.File(folder / "in.h5", "w") as f:
        f["x"] = np.arange(4096.0).reshape(64, 64)


@pytest.mark.parametrize("report", ["missing/report.json", "."], ids=["no folder", "a folder"])
def test_an_unwritable_report_is_a_usage_error_before_any_work(mpitools, tmp_path, report) -> None:
    small_input(tmp_path)
    job(tmp_path, 'name = "scale"\nfactor = 2')
    result, _ = run(mpitools, tmp_path, 2, "--report", report, timeout=60)
    assert result.returncode == 2, result.stderr
    assert statuses(result) == ["EXIT 2"] * 2
    (line,) = errors(result)
    assert line.startswith(f"h5par: error: --report {report!r} cannot be written ("), line
    assert left(tmp_path) == ["in.h5", "job.toml"]  # nothing written, no work folder


def test_a_report_is_written_once_and_every_rank_succeeds(mpitools, tmp_path) -> None:
    small_input(tmp_path)
    job(tmp_path, 'name = "scale"\nfactor = 2')
    result, _ = run(mpitools, tmp_path, 2, "--report", "report.json", timeout=60)
    assert result.returncode == 0, result.stderr
    assert statuses(result) == ["EXIT 0"] * 2
    assert '"ranks": 2' in (tmp_path / "report.json").read_text()


@pytest.mark.parametrize("verb", ["plan", "status"])
def test_a_verb_only_rank_0_carries_out_ends_with_its_status_on_every_rank(
    mpitools, tmp_path, verb
) -> None:
    small_input(tmp_path)
    job(tmp_path, 'name = "scale"\nfactor = 2\nnot_a_parameter = 1')
    cmd = ["mpirun", "--oversubscribe", "-n", "2", sys.executable, "-c", WRAPPER, verb, "job.toml"]
    result = mpitools.launch(cmd, cwd=tmp_path, env=mpitools.mpi_env(), timeout=60)
    assert result.returncode == 2, result.stderr
    assert statuses(result) == ["EXIT 2"] * 2
    assert len(errors(result)) == 1


def gzip_input(folder: Path) -> None:
    with h5py.File(folder / "in.h5", "w") as f:
        f.create_dataset("x", data=np.ones((256, 64)), chunks=(16, 64), compression="gzip")


@pytest.mark.parametrize("nranks", [2, 3])
def test_a_failed_rank_waits_for_a_rank_that_is_merely_computing(mpitools, tmp_path, nranks):
    # Rank 0 computes for 15 s (longer than a failed rank's old patience of 10 s); the
    # failed rank must wait for it to arrive and the job end with the agreed error.
    gzip_input(tmp_path)
    job(tmp_path, 'name = "scale"\nfactor = 2', watchdog=60)
    fault = f"kernel:0:delay=15,kernel:{nranks - 1}:raise"
    result, seconds = run(mpitools, tmp_path, nranks, fault=fault, timeout=90)
    assert result.returncode == 1, result.stderr
    assert statuses(result) == ["EXIT 1"] * nranks  # an agreed error, not MPI_Abort
    (line,) = errors(result)
    assert f"injected fault at kernel on rank {nranks - 1}" in line
    assert f"rank {nranks - 1} of {nranks}" in line and "aborting" not in line
    assert 15 < seconds < 45
    assert left(tmp_path) == ["in.h5", "job.toml"]


def test_waiting_ranks_wait_for_a_rank_still_processing_its_own_files(mpitools, tmp_path):
    # File-level parallelism: rank 1's file is done at once, rank 0's takes 12 s of beating
    # steps; rank 1 waits in an agreement longer than watchdog + 5 s, and must not give up.
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["x"] = np.ones((512, 64))
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f["x"] = np.ones((8, 8))
    job(tmp_path, 'name = "scale"\nfactor = 2', watchdog=3, memory="16KiB")
    text = (tmp_path / "job.toml").read_text().replace('"in.h5"', '["a.h5", "b.h5"]')
    text = text.replace('"out.h5"', '"{stem}_out.h5"').replace("file_parallel_below = 0", "")
    (tmp_path / "job.toml").write_text(text + "file_parallel_below = 1000000000\n")
    result, seconds = run(mpitools, tmp_path, 2, fault="kernel:0:delay=0.8", timeout=90)
    assert result.returncode == 0, result.stderr
    assert statuses(result) == ["EXIT 0"] * 2
    assert seconds > 8  # longer than rank 1's patience (watchdog + 5 s): it asked, and waited
    assert left(tmp_path) == ["a.h5", "a_out.h5", "b.h5", "b_out.h5", "job.toml"]


@pytest.mark.parametrize("many", [False, True], ids=["one big dataset", "many datasets"])
def test_a_copy_longer_than_the_watchdog_is_progress(mpitools, tmp_path, many) -> None:
    # Rank 0 copies the untouched datasets into the new output alone, slowed down to 0.3 s
    # per chunk of a big LZF dataset or per small dataset (10 s in all, watchdog 3 s): it
    # beats as it copies, and rank 1, waiting longer than watchdog + 5 s, waits on.
    rng = np.random.default_rng(1)
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f["x"] = np.ones((64, 64))
        if many:
            for i in range(32):
                f[f"keep/d{i}"] = rng.random(100)
        else:  # random doubles do not compress: 33 stored chunks, over 16 MiB
            f.create_dataset(
                "keep", data=rng.random((2100, 1024)), chunks=(64, 1024), compression="lzf"
            )
    job(tmp_path, 'name = "scale"\nfactor = 2', watchdog=3)
    text = (tmp_path / "job.toml").read_text()
    (tmp_path / "job.toml").write_text(
        text.replace('path = "in.h5"', 'path = "in.h5"\ndatasets = ["/x"]')
    )
    result, seconds = run(mpitools, tmp_path, 2, fault="copy:0:delay=0.3", timeout=90)
    assert result.returncode == 0, result.stderr
    assert statuses(result) == ["EXIT 0"] * 2
    assert seconds > 8
    with h5py.File(tmp_path / "in.h5") as f, h5py.File(tmp_path / "out.h5") as g:
        names = [f"keep/d{i}" for i in range(32)] if many else ["keep"]
        assert all(f[n][...].tobytes() == g[n][...].tobytes() for n in names)
        assert [g[n].compression for n in names] == [f[n].compression for n in names]
    assert left(tmp_path) == ["in.h5", "job.toml", "out.h5"]


def test_a_failed_rank_the_others_cannot_answer_ends_the_job_soon(mpitools, tmp_path) -> None:
    # Rank 1 fails before the collective open of the input; rank 0, inside it, holds the
    # interpreter and cannot answer the failed rank's question: the job ends well before
    # the watchdog (60 s), with rank 1's message.
    gzip_input(tmp_path)
    job(tmp_path, 'name = "scale"\nfactor = 2', watchdog=60)
    result, seconds = run(mpitools, tmp_path, 2, fault="open:1:raise", timeout=90)
    assert result.returncode == 1, result.stderr
    (line,) = errors(result)
    assert "injected fault at open on rank 1 [open, rank 1 of 2" in line
    assert line.endswith("; aborting the job") and "made no progress" not in result.stderr
    assert seconds < 30
