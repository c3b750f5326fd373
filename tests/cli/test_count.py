"""Many datasets in one file, many small files: killed mid-run, resumed on another rank count.

Small datasets go in batches spread over the ranks, the journal records each batch as
appended lines (issue 23); what a kill loses is redone, nothing is done twice, and the
result is bitwise numpy's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from h5par.engine.journal import Journal

pytestmark = pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun")

JOB = """version = 1
[input]
path = "{input}"
[output]
path = "{output}"
[[kernels]]
name = "clip"
min = 0.0
"""


def h5par_run(mpitools: Any, cwd: Path, nranks: int, fault: str | None = None) -> Any:
    return mpitools.h5par_run(cwd, nranks, "--quiet", fault=fault, timeout=240)


def many_datasets(folder: Path, seed: int) -> None:
    """1100 datasets: three batches (at most 512 each), the file shared by every rank."""
    rng = np.random.default_rng(seed)
    with h5py.File(folder / "many.h5", "w") as f:
        for g in range(44):
            for d in range(25):
                f.create_dataset(f"{g}/v{d}", data=rng.standard_normal(50 + d))
    job = JOB.format(input="many.h5", output="out.h5") + "[run]\nfile_parallel_below = 0\n"
    (folder / "job.toml").write_text(job)


def check_many_datasets(folder: Path) -> None:
    with h5py.File(folder / "many.h5", "r") as f, h5py.File(folder / "out.h5", "r") as g:
        paths: list[str] = []
        f.visit(lambda name: paths.append(name) if isinstance(f[name], h5py.Dataset) else None)
        assert len(paths) == 1100
        for path in paths:
            assert g[path][()].tobytes() == np.clip(f[path][()], 0.0, None).tobytes(), path


@pytest.mark.parametrize(("first", "then", "nth"), [(1, 3, 600), (2, 1, 300), (3, 2, 200)])
def test_many_datasets_killed_mid_run_resume_on_another_rank_count(
    tmp_path: Path, mpitools: Any, first: int, then: int, nth: int
) -> None:
    many_datasets(tmp_path, first)  # the kill comes in the second batch
    killed = h5par_run(mpitools, tmp_path, first, f"write:0:kill:{nth}")
    assert killed.returncode != 0 and not (tmp_path / "out.h5").exists()
    journal = Journal.load(tmp_path / ".out.h5.h5par")
    assert journal is not None and 0 < journal.count()[0] < 1100
    resumed = h5par_run(mpitools, tmp_path, then)
    assert resumed.returncode == 0, resumed.stderr
    check_many_datasets(tmp_path)


def test_a_stop_in_a_batch_ends_after_its_checkpoint_and_resumes(
    tmp_path: Path, mpitools: Any
) -> None:
    many_datasets(tmp_path, 7)
    stopped = h5par_run(mpitools, tmp_path, 2, "write:1:term:100")
    assert stopped.returncode == 75, stopped.stderr
    assert "stopped on SIGTERM at a block boundary with 512 of 1100 units done" in stopped.stderr
    resumed = h5par_run(mpitools, tmp_path, 3)
    assert resumed.returncode == 0, resumed.stderr
    check_many_datasets(tmp_path)


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (mpirun's ranks), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


@pytest.mark.parametrize(("first", "then"), [(1, 2), (2, 3), (3, 1)])
def test_many_small_files_killed_mid_run_resume_on_another_rank_count(
    tmp_path: Path, mpitools: Any, first: int, then: int
) -> None:
    rng = np.random.default_rng(first)
    (tmp_path / "in").mkdir()
    for i in range(60):
        with h5py.File(tmp_path / "in" / f"d{i:03d}.h5", "w") as f:
            f["x"] = rng.standard_normal((20, 20))
    (tmp_path / "job.toml").write_text(JOB.format(input="in/*.h5", output="out/{stem}.h5"))

    # A fault's count starts again with each file: a rank is killed from outside instead.
    cmd = ["mpirun", "-n", str(first), sys.executable, "-m", "mpi4py", "-m", "h5par"]
    env = mpitools.mpi_env({"H5PAR_FAULT": "write:*:delay=0.1"})
    proc = mpitools.background([*cmd, "run", "job.toml", "--quiet"], cwd=tmp_path, env=env)
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("out/*.h5"))) < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    for child in children(proc.pid):  # a rank killed: mpirun ends the others
        os.kill(child, signal.SIGKILL)
        break
    assert mpitools.finish(proc)[0] != 0
    assert 10 <= len(list((tmp_path / "out").glob("*.h5"))) < 60
    resumed = h5par_run(mpitools, tmp_path, then)
    assert resumed.returncode == 0, resumed.stderr
    for i in range(60):
        name = f"d{i:03d}.h5"
        with h5py.File(tmp_path / "in" / name, "r") as f, h5py.File(tmp_path / "out" / name) as g:
            assert g["x"][()].tobytes() == np.clip(f["x"][()], 0.0, None).tobytes(), name


def test_one_small_file_of_many_datasets_keeps_every_rank_busy(tmp_path, mpitools) -> None:
    """The default file_parallel_below: one small file on 2 ranks is shared, not given to one.

    Its datasets go in batches over both ranks (each rank reads some), and the result is
    numpy's; with two such files on two ranks each goes to one rank.
    """
    many_datasets(tmp_path, seed=4)
    job = (tmp_path / "job.toml").read_text().replace("[run]\nfile_parallel_below = 0\n", "")
    (tmp_path / "job.toml").write_text(job)
    plan = mpitools.launch(
        ["mpirun", "-n", "2", sys.executable, "-m", "mpi4py", "-m", "h5par", "plan", "job.toml"],
        cwd=tmp_path, env=mpitools.mpi_env(), timeout=120,
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    assert "dataset-level (all ranks)" in plan.stdout and "file-level" not in plan.stdout
    done = mpitools.h5par_run(tmp_path, 2, "--quiet", "--report", "r.json", timeout=240)
    assert done.returncode == 0, done.stderr
    per_rank = json.loads((tmp_path / "r.json").read_text())["per_rank"]
    assert len(per_rank["bytes_read"]) == 2 and min(per_rank["bytes_read"]) > 0, per_rank
    check_many_datasets(tmp_path)
    shutil.copy(tmp_path / "many.h5", tmp_path / "many2.h5")
    (tmp_path / "job.toml").write_text(job.replace('"many.h5"', '"many*.h5"').replace(
        '"out.h5"', '"{stem}_out.h5"'))  # fmt: skip
    plan = mpitools.launch(
        ["mpirun", "-n", "2", sys.executable, "-m", "mpi4py", "-m", "h5par", "plan", "job.toml"],
        cwd=tmp_path, env=mpitools.mpi_env(), timeout=120,
    )  # fmt: skip
    assert plan.stdout.count("file-level") == 2, plan.stdout


@pytest.mark.parametrize("nranks", [1, 2, 3, 4])
def test_ranks_inspecting_a_shared_file_name_its_first_bad_dataset(
    tmp_path, mpitools, nranks
) -> None:
    """Every rank inspects a share of the datasets; the error names the first bad one in the
    file's order, whatever the rank count, in one line, and nothing is written."""
    with h5py.File(tmp_path / "in.h5", "w") as f:
        for i in range(10):
            f[f"a{i}"] = np.arange(10.0) - 5
        for name in ("c1", "c5"):  # positions 10 and 11: on different ranks from 2 on
            f[name] = np.array([b"xx", b"yy"], dtype="V2")
    (tmp_path / "job.toml").write_text(
        'version = 1\n[input]\npath = "in.h5"\n[output]\npath = "out/{stem}.h5"\n'
        '[[kernels]]\nname = "clip"\nmin = 0.0\n[run]\nfile_parallel_below = 0\n'
    )
    result = h5par_run(mpitools, tmp_path, nranks)
    lines = [line for line in result.stderr.splitlines() if line.startswith("h5par:")]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "dataset /c1 (|V2" in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5", "job.toml"]
