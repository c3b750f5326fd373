"""Output folders named by a pattern are created (rank 0, after validation); `plan` lists
them; a folder that cannot be created is one error line with exit status 2 (1-2 ranks).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

JOB = """version = 1
[input]
path = "in*.h5"
[output]
path = "clean/sub/{stem}_clean.h5"
[[kernels]]
name = "clip"
min = 0.0
"""
# Without CAP_DAC_OVERRIDE root meets folder permissions like any user.
AS_USER = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


@pytest.fixture
def work(tmp_path) -> Path:
    for i in range(3):
        with h5py.File(tmp_path / f"in{i}.h5", "w") as f:
            f["x"] = np.arange(200.0) - 100 * i
    (tmp_path / "job.toml").write_text(JOB)
    return tmp_path


def h5par_command(nranks: int, args: list[str]) -> list[str]:
    if nranks == 1:
        return [sys.executable, "-m", "h5par", *args]
    mpirun = shutil.which("mpirun") or "mpirun"
    launcher = [mpirun, "--oversubscribe", "-n", str(nranks), sys.executable, "-m", "mpi4py"]
    return [*launcher, "-m", "h5par", *args]


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("h5par:")]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("nranks", [1, 2])
@pytest.mark.parametrize("below", ["64MiB", "0"], ids=["file-level", "dataset-level"])
def test_missing_folders_of_a_pattern_are_created(work, mpitools, nranks, below) -> None:
    args = ["run", "job.toml", "--set", f"run.file_parallel_below={below}"]
    done = mpitools.launch(h5par_command(nranks, args), cwd=work, env=mpitools.mpi_env())
    assert done.returncode == 0, done.stderr
    for i in range(3):
        with h5py.File(work / f"in{i}.h5") as f, h5py.File(work / f"clean/sub/in{i}_clean.h5") as g:
            assert g["x"][...].tobytes() == np.clip(f["x"][...], 0.0, None).tobytes()
    assert sorted(p.name for p in (work / "clean" / "sub").iterdir()) == [
        f"in{i}_clean.h5" for i in range(3)
    ]


def test_plan_lists_the_folders_it_would_create_and_creates_none(work, run_python) -> None:
    done = run_python(["-m", "h5par", "plan", "job.toml", "--ranks", "2"], cwd=work)
    assert done.returncode == 0, done.stderr
    assert "creates 2 output folder(s): clean, clean/sub" in done.stdout.splitlines()
    done = run_python(["-m", "h5par", "plan", "job.toml", "--ranks", "2", "--json"], cwd=work)
    assert done.returncode == 0, done.stderr
    assert '"new_folders": [\n      "clean",\n      "clean/sub"\n    ]' in done.stdout
    assert not (work / "clean").exists()


def _unwritable(work: Path) -> list[str]:
    (work / "locked").mkdir(mode=0o555)
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("root, and no setpriv to drop CAP_DAC_OVERRIDE")
    return AS_USER


@pytest.mark.timeout(300)
@pytest.mark.parametrize("nranks", [1, 2])
@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("afile/clean/{stem}.h5", "output folder 'afile/clean' cannot be created: 'afile' is not a folder"),
        ("locked/clean/{stem}.h5", "output folder 'locked/clean' cannot be created: 'locked' is not writable (no permission to create files in it)"),
        ("locked/{stem}.h5", "output folder 'locked' is not writable (no permission to create files in it)"),
        ("x" * 300 + "/{stem}.h5", f"cannot create output folder {'x' * 300!r}: File name too long"),
    ],
    ids=["a file", "unwritable parent", "unwritable folder", "name too long"],
)  # fmt: skip
def test_a_folder_that_cannot_be_created_is_one_error_line(
    work, mpitools, nranks, path, message
) -> None:
    (work / "afile").write_text("")
    prefix = _unwritable(work)
    args = ["run", "job.toml", "--set", f"output.path={path}"]
    done = mpitools.launch(
        prefix + h5par_command(nranks, args), cwd=work, env=mpitools.mpi_env(), timeout=120
    )
    assert done.returncode == 2, done.stderr
    (line,) = errors(done.stderr)  # at 2 ranks with the phase and rank that found it
    assert line.startswith(f"h5par: error: {message}"), done.stderr
    assert sorted(p.name for p in work.iterdir()) == [
        "afile", "in0.h5", "in1.h5", "in2.h5", "job.toml", "locked",
    ]  # fmt: skip
    assert not any((work / "locked").iterdir())


@pytest.mark.timeout(120)
@pytest.mark.parametrize("verb", ["run", "plan"])
def test_an_output_that_is_a_folder_is_refused_before_any_work(work, mpitools, verb) -> None:
    # With --overwrite the whole run was done, then os.replace failed: IsADirectoryError,
    # exit 1, the work lost.
    (work / "clean" / "sub" / "in1_clean.h5").mkdir(parents=True)
    (work / "clean" / "sub" / "in1_clean.h5" / "keep").write_text("mine")
    args = [verb, "job.toml", "--overwrite"] if verb == "run" else [verb, "job.toml"]
    done = mpitools.launch(h5par_command(1, args), cwd=work, env=mpitools.mpi_env())
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert errors(done.stderr) == [
        "h5par: error: output 'clean/sub/in1_clean.h5' is a folder (valid: the path of a file)"
    ], done.stderr
    assert sorted(p.name for p in (work / "clean" / "sub").iterdir()) == ["in1_clean.h5"]
    assert (work / "clean" / "sub" / "in1_clean.h5" / "keep").read_text() == "mine"


@pytest.mark.timeout(120)
def test_an_existing_parts_folder_is_kept_without_overwrite(work, mpitools) -> None:
    # out.h5 missing, out.h5.parts/ present: finalize removed the folder and its files.
    for name in ("in1.h5", "in2.h5"):
        (work / name).unlink()
    parts = work / "clean" / "sub" / "in0_clean.h5.parts"
    parts.mkdir(parents=True)
    (parts / "notes.txt").write_text("mine")
    args = ["run", "job.toml", "--set", "output.layout='subfiled'"]
    args += ["--set", "run.file_parallel_below=0"]
    done = mpitools.launch(h5par_command(2, args), cwd=work, env=mpitools.mpi_env())
    assert done.returncode == 2, (done.stdout, done.stderr)
    (line,) = errors(done.stderr)
    assert "output parts folder 'clean/sub/in0_clean.h5.parts' exists" in line, done.stderr
    assert sorted(p.name for p in parts.iterdir()) == ["notes.txt"]
    assert not (work / "clean" / "sub" / "in0_clean.h5").exists()
