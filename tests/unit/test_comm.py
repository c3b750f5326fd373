"""The job's communicator: one process needs no MPI, several get COMM_WORLD (h5par.parallel.comm)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from h5par.parallel import comm

_LAUNCHER_VARS = (*comm._RANK_VARS, *comm._SIZE_VARS, "OMPI_COMM_WORLD_LOCAL_SIZE")


def _plain_env(**extra: str) -> dict[str, str]:
    """This environment without any launcher's variables (a process started by hand)."""
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCHER_VARS}
    env.pop("OMPI_MCA_pml", None)
    return {**env, **extra}


def _python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


_ONE_PROCESS_RUN = """
import sys
import h5py, numpy as np
import h5par
data = np.random.default_rng(1).standard_normal((1003, 17))
with h5py.File("in.h5", "w") as f:
    f["x"] = data
h5par.apply("in.h5", "out.h5", [{"name": "clip", "min": 0.0}, {"name": "astype", "dtype": "f4"}])
with h5py.File("out.h5", "r") as f:
    same = np.array_equal(f["x"][...], np.clip(data, 0.0, None).astype(np.float32))
print(same, "mpi4py.MPI" in sys.modules)
"""


@pytest.mark.parametrize("launcher", [{}, {"OMPI_COMM_WORLD_SIZE": "1"}, {"SLURM_NTASKS": "1"}])
def test_a_one_process_job_runs_without_initialising_mpi(
    tmp_path: Path, launcher: dict[str, str]
) -> None:
    done = _python(_ONE_PROCESS_RUN, _plain_env(**launcher), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False"]  # bitwise as numpy; MPI never imported


def test_a_one_process_job_uses_mpi_once_the_process_has_initialised_it(tmp_path: Path) -> None:
    code = (
        "from mpi4py import MPI\nfrom h5par.parallel.comm import resolve_comm, self_comm\n"
        "print(resolve_comm() is MPI.COMM_WORLD, self_comm() is MPI.COMM_SELF)"
    )
    done = _python(code, _plain_env(), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]


def test_the_mpio_driver_on_one_process_opens_through_comm_self(tmp_path: Path) -> None:
    import h5py

    if not h5py.get_config().mpi:
        pytest.skip("h5py built without MPI")
    code = (
        "import h5par, sys\n"
        "with h5par.File('m.h5', 'w', driver='mpio') as f:\n"
        "    f['x'] = [1, 2, 3]\n"
        "    print(f.driver, type(f.comm).__name__, 'mpi4py.MPI' in sys.modules)\n"
    )
    done = _python(code, _plain_env(), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["mpio", "OneProcess", "True"]
    assert h5py.File(tmp_path / "m.h5", "r")["x"][...].tolist() == [1, 2, 3]


def test_one_process_collectives_return_its_own_values() -> None:
    one = comm.ONE_PROCESS
    array = np.arange(5.0)
    comm.bcast_array(one, array)
    assert (comm.rank(one), comm.size(one)) == (0, 1)
    assert comm.bcast(one, {"a": 1}) == {"a": 1}
    assert comm.allgather(one, 7) == [7]
    assert comm.allgather_within(one, "x", patience=0.01) == ["x"]
    assert comm.private(one) is one  # the Dup of one process: itself
    assert array.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_abort_of_a_one_process_job_ends_it_with_the_status(tmp_path: Path) -> None:
    done = _python("from h5par.parallel.comm import abort\nabort(3)", _plain_env(), tmp_path)
    assert done.returncode == 3


def test_world_comes_from_the_launcher_before_mpi_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    if comm._initialised() is not None:
        pytest.skip("MPI initialised in this process")
    for name in _LAUNCHER_VARS:
        monkeypatch.delenv(name, raising=False)
    assert comm.world() == (0, 1)
    monkeypatch.setenv("PMI_RANK", "2")
    monkeypatch.setenv("PMI_SIZE", "3")
    assert comm.world() == (2, 3)


@pytest.mark.parametrize(
    ("launcher", "user_pml", "expected"),
    [
        ({}, None, "ob1"),  # a singleton
        ({"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_SIZE": "4"}, None, "ob1"),
        ({"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}, None, None),  # 2 nodes
        ({"SLURM_NTASKS": "4"}, None, None),  # srun: nodes unknown before MPI starts
        ({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}, "ucx", "ucx"),
    ],
)
def test_single_node_jobs_skip_the_network_probe_unless_the_user_chose(
    monkeypatch: pytest.MonkeyPatch,
    launcher: dict[str, str],
    user_pml: str | None,
    expected: str | None,
) -> None:
    for name in (*_LAUNCHER_VARS, "OMPI_MCA_pml"):
        monkeypatch.delenv(name, raising=False)
    for name, value in launcher.items():
        monkeypatch.setenv(name, value)
    if user_pml is not None:
        monkeypatch.setenv("OMPI_MCA_pml", user_pml)
    comm._single_node_defaults()
    assert os.environ.get("OMPI_MCA_pml") == expected  # noqa: SIM112  (Open MPI spells it so)
