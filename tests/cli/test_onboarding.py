"""A newcomer's first commands (issue 22, items 11 and 12): ``h5par kernels`` from the registry,
the minimal job ``run --help`` ends with (it runs as printed), ``h5par init`` on files written
by netCDF4-python, ``h5par demo`` saying where its files are, and every job in ``jobs/`` run
the way its first comment says, on the files ``h5par demo`` writes."""

from __future__ import annotations

import dataclasses
import re
import shutil
import sys
import tomllib
from pathlib import Path

import h5py
import numpy as np
import pytest

from h5par.kernels import KERNELS

ROOT = Path(__file__).resolve().parents[2]
HELPER = str(Path(__file__).with_name("foreign_tools.py"))


def h5par(run_python, *args: str, cwd: Path | None = None):
    return run_python(["-m", "h5par", *args], cwd=cwd)


def test_kernels_lists_every_registered_kernel_and_parameter(run_python) -> None:
    done = h5par(run_python, "kernels")
    assert done.returncode == 0, done.stderr
    listed = dict(
        re.findall(r"^(\w+): .*?\n    parameters: (.*?)(?=\n\S|\Z)", done.stdout, re.M | re.S)
    )
    assert set(listed) == set(KERNELS)
    for name, kernel in KERNELS.items():
        for field in dataclasses.fields(kernel):
            if field.init:
                assert re.search(rf"\b{field.name}\b", listed[name]), (name, field.name)
    assert 'dtype (required), overflow = "error"' in listed["astype"]


def test_run_help_ends_with_a_job_that_runs_as_printed(run_python, tmp_path) -> None:
    done = h5par(run_python, "run", "--help")
    assert done.returncode == 0, done.stderr
    text = done.stdout[done.stdout.index("a minimal job file") :]
    job = "\n".join(line[2:] for line in text.splitlines()[1:])
    tomllib.loads(job)  # valid TOML
    (tmp_path / "run").mkdir()
    data = np.random.default_rng(0).normal(size=(20, 30))
    with h5py.File(tmp_path / "run" / "snap_0.h5", "w") as f:
        f["x"] = data
    (tmp_path / "job.toml").write_text(job)
    ran = h5par(run_python, "run", "job.toml", "--quiet", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    with h5py.File(tmp_path / "clean" / "snap_0.h5", "r") as f:
        assert f["x"][...].tobytes() == np.clip(data, 0.0, None).tobytes()


def test_init_writes_a_job_for_netcdf_files_that_plans_and_runs(run_python, tmp_path) -> None:
    for i in range(3):
        written = run_python([HELPER, "write-climate", str(tmp_path / f"snap_{i}.nc")])
        assert written.returncode == 0, written.stderr
    done = h5par(run_python, "init", "job.toml", "--input", "snap_*.nc", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "job.toml").read_text()
    job = tomllib.loads(text)
    assert job["input"] == {"path": "snap_*.nc", "datasets": ["/T", "/u"]}
    assert "3 file(s) matching 'snap_*.nc'" in text
    assert "/T(time, z, y, x)  float64 3x4x6x8" in text
    assert re.search(r"Coordinates .*: /time, /x, /y, /z", text), text
    planned = h5par(run_python, "plan", "job.toml", cwd=tmp_path)
    assert planned.returncode == 0, planned.stderr
    ran = h5par(run_python, "run", "job.toml", "--quiet", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    for i in range(3):
        with (
            h5py.File(tmp_path / f"snap_{i}.nc") as a,
            h5py.File(tmp_path / "out" / f"snap_{i}.nc") as b,
        ):
            assert a["T"][...].tobytes() == b["T"][...].tobytes()
    again = h5par(run_python, "init", "job.toml", "--input", "snap_*.nc", cwd=tmp_path)
    assert again.returncode == 2 and "exists (pass --overwrite" in again.stderr
    assert (tmp_path / "job.toml").read_text() == text
    nothing = h5par(run_python, "init", "other.toml", "--input", "none_*.nc", cwd=tmp_path)
    assert nothing.returncode == 2 and "'none_*.nc' matches no file" in nothing.stderr
    assert not (tmp_path / "other.toml").exists()


@pytest.fixture(scope="module")
def demo_tree(tmp_path_factory, mpitools) -> tuple[Path, str]:
    """A copy of the repository's jobs/ beside the folder ``h5par demo demo`` wrote."""
    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(ROOT / "jobs", root / "jobs")
    cmd = [sys.executable, "-m", "h5par", "demo", "demo"]
    done = mpitools.launch(cmd, cwd=root, env=mpitools.mpi_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    return root, done.stdout


def test_demo_says_where_its_input_job_and_output_are(demo_tree) -> None:
    root, out = demo_tree
    first = out.splitlines()[0]
    assert first == (
        "h5par demo: input demo/demo_input.h5, job demo/demo_job.toml, "
        "output demo/demo_input_clean.h5"
    )
    for name in ("demo_input.h5", "demo_job.toml", "demo_input_clean.h5"):
        assert (root / "demo" / name).is_file()
    assert "h5par run jobs/NAME.toml" in out


@pytest.mark.parametrize("job", sorted(p.name for p in (ROOT / "jobs").glob("*.toml")))
def test_every_job_runs_as_its_first_comment_says(run_python, demo_tree, job) -> None:
    root, _ = demo_tree
    head = (root / "jobs" / job).read_text().splitlines()[:2]
    assert head[0].startswith("# Run from the repository root: `h5par demo demo`"), head
    command = head[1].removeprefix("#").split()
    assert command == ["h5par", "run", f"jobs/{job}"], head
    done = run_python(["-m", *command, "--quiet", "--overwrite"], cwd=root)
    assert done.returncode == 0, done.stderr
    output = tomllib.loads((root / "jobs" / job).read_text()).get("output", {}).get("path")
    if output is not None:
        assert (root / "jobs" / output.replace("{stem}", "demo_input")).resolve().is_file()
