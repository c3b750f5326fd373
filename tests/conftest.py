"""Shared fixtures: MPI environment for subprocesses, quiet output on ranks > 0."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
from hypothesis import settings

# Timings on shared machines swing: no per-example deadline (pytest-timeout still bounds tests).
settings.register_profile("h5par", deadline=None)
settings.load_profile("h5par")

REPO = Path(__file__).resolve().parents[1]


def _find_real_data() -> Path:
    """The corpus of files written by other tools: $H5PAR_REAL_DATA, else ../shared/data/real
    next to the checkout (or next to any parent folder), else the workplace's copy."""
    if "H5PAR_REAL_DATA" in os.environ:
        return Path(os.environ["H5PAR_REAL_DATA"])
    candidates = [p / "shared" / "data" / "real" for p in REPO.parents]
    candidates.append(Path("/work/shared/data/real"))
    return next((c for c in candidates if c.is_dir()), candidates[0])


REAL_DATA = _find_real_data()
MPI_TIMEOUT = 240  # seconds for one mpirun launched by a test


def _world_size() -> int:
    for var in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"):
        if var in os.environ:
            return int(os.environ[var])
    return 1


def _world_rank() -> int:
    for var in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


def pytest_configure(config: pytest.Config) -> None:
    # Under mpirun every rank runs pytest; only rank 0 reports passes in detail.
    if _world_size() > 1 and _world_rank() > 0:
        config.option.verbose = -2
        config.option.reportchars = "fE"


def mpi_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a child ``mpirun``: root permission and oversubscription, plus ``extra``."""
    env = dict(os.environ)
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env.update(OMPI_MCA_mpi_yield_when_idle="1", OMPI_MCA_rmaps_base_oversubscribe="1")
    env.update(extra or {})
    return env


def run_mpi(
    nranks: int,
    args: Sequence[str],
    cwd: Path | None = None,
    timeout: float = MPI_TIMEOUT,
    env: Mapping[str, str] | None = None,
    python: str | Path = sys.executable,
) -> subprocess.CompletedProcess[str]:
    """Run ``python args...`` on ``nranks`` ranks under mpirun (serial pass only).

    ``env`` adds variables to the ranks' environment; ``python`` is the interpreter they run.
    """
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        pytest.fail("mpirun not found: run the tests through `make test`")
    cmd = [mpirun, "--oversubscribe", "-n", str(nranks), str(python), *args]
    return launch(cmd, cwd=cwd, env=mpi_env(env), timeout=timeout)


def launch(
    cmd: Sequence[str],
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = MPI_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in its own process group; on timeout kill the whole group and fail.

    Killing mpirun alone can leave its ranks behind (still blocked): the group goes.
    """
    code, out, err = finish(background(cmd, cwd, env), timeout)
    return subprocess.CompletedProcess(cmd, code, out, err)


def background(
    cmd: Sequence[str], cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start ``cmd`` in its own process group, output captured; end it with :func:`finish`."""
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = MPI_TIMEOUT) -> tuple[int, str, str]:
    """Wait for ``proc``: (status, stdout, stderr); on timeout kill its process group and fail."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout} s: {' '.join(map(str, proc.args))}\n{out}\n{err}")
    return proc.returncode, out, err


def run_python(
    args: Sequence[str], cwd: Path | None = None, timeout: float = MPI_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run ``python args...`` as one process (a singleton MPI rank)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=mpi_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(name="run_mpi")
def _run_mpi_fixture() -> object:
    """``run_mpi(nranks, args, cwd=None, env=None, python=...)``: python under mpirun."""
    return run_mpi


#: ``python -c WRAPPER ARGS`` runs the CLI as ``h5par ARGS`` and exits with its status.
CLI_WRAPPER = "import sys, h5par.app.cli as c; sys.exit(c.main(sys.argv[1:]))"


def cli_command(nranks: int, *args: str) -> list[str]:
    """``h5par ARGS`` on one process (no mpirun: a singleton) or under ``mpirun -n NRANKS``."""
    python = [sys.executable, "-c", CLI_WRAPPER, *args]
    if nranks == 1:
        return python
    mpirun = shutil.which("mpirun") or "mpirun"
    return [mpirun, "-n", str(nranks), sys.executable, "-m", "mpi4py", *python[1:]]


def refused(cwd: Path, message: str) -> None:
    """``h5par plan`` and ``h5par run`` of ``cwd/job.toml`` each end with one error line
    matching ``message``, exit status 2, and leave ``cwd`` as it was."""
    before = sorted(p.name for p in cwd.iterdir())
    for verb in ("plan", "run"):
        done = launch([sys.executable, "-m", "h5par", verb, "job.toml"], cwd=cwd, env=mpi_env())
        lines = [line for line in done.stderr.splitlines() if line.startswith("h5par")]
        assert done.returncode == 2 and len(lines) == 1, (verb, done.stderr)
        assert re.search(message, lines[0]), lines[0]
        assert sorted(p.name for p in cwd.iterdir()) == before, verb


def h5par_run(
    cwd: Path,
    nranks: int,
    *args: str,
    fault: str | None = None,
    timeout: float = MPI_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """``mpirun -n NRANKS python -m mpi4py -m h5par run job.toml ARGS`` in ``cwd``.

    ``fault`` is set as ``H5PAR_FAULT``; the run is ended (and the test failed) at ``timeout``.
    """
    cmd = ["mpirun", "-n", str(nranks), sys.executable, "-m", "mpi4py", "-m", "h5par"]
    env = mpi_env({"H5PAR_FAULT": fault} if fault else None)
    return launch([*cmd, "run", "job.toml", *args], cwd=cwd, env=env, timeout=timeout)


@pytest.fixture(name="mpitools", scope="session")
def _mpitools_fixture() -> object:
    """``launch(cmd, cwd, env, timeout)``, ``background(cmd, cwd, env)`` and ``finish(proc,
    timeout)`` (a run in the background), ``mpi_env(extra)`` for tests building commands,
    ``h5par_run(cwd, nranks, *args, fault, timeout)`` for ``h5par run job.toml``,
    ``cli_command(nranks, *args)`` for any verb on one process or under mpirun,
    ``refused(cwd, message)`` to check that plan and run refuse ``cwd/job.toml``."""
    return SimpleNamespace(
        launch=launch, background=background, finish=finish, mpi_env=mpi_env,
        h5par_run=h5par_run, cli_command=cli_command, refused=refused,
    )  # fmt: skip


@pytest.fixture(scope="session")
def cluster_script() -> ModuleType:
    """``scripts/cluster.py`` as a module: simulated hosts, SLURM's packages and munge."""
    spec = importlib.util.spec_from_file_location("h5par_cluster", REPO / "scripts" / "cluster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(name="run_python")
def _run_python_fixture() -> object:
    """``run_python(args, cwd=None)``: python as one process."""
    return run_python


@pytest.fixture(name="real_data")
def _real_data() -> Path:
    """Folder of HDF5 files written by other tools (skip clearly when absent)."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real-data corpus not found at {REAL_DATA}")
    return REAL_DATA


def _pins(*names: str) -> list[str]:
    """``name==version`` for each name, as constraints.txt pins it (unpinned if absent)."""
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep:
            pins[name.strip().lower()] = version.strip()
    return [f"{n}=={pins[n]}" if n in pins else n for n in names]


@pytest.fixture(scope="session")
def serial_python() -> Path:
    """Python of a virtual environment with PyPI's serial h5py wheel (built once, cached).

    The environment lives in ``$H5PAR_SERIAL_VENV`` or the user's cache folder; h5par itself
    is taken from this checkout through PYTHONPATH.
    """
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    root = Path(os.environ.get("H5PAR_SERIAL_VENV", cache / "h5par" / f"serial-venv-{tag}"))
    python = root / "bin" / "python"
    ready = root / ".h5par-ready"
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another pytest may be building it right now
        pins = _pins("numpy", "scipy", "h5py", "mpi4py", "tqdm")
        if not ready.is_file() or ready.read_text().split() != pins:
            shutil.rmtree(root, ignore_errors=True)
            steps = [
                [sys.executable, "-m", "venv", str(root)],
                [str(python), "-m", "pip", "install", "-q", "--only-binary=:all:", *pins],
            ]
            for step in steps:
                try:
                    done = subprocess.run(
                        step, capture_output=True, text=True, timeout=240, check=False
                    )
                except subprocess.TimeoutExpired:
                    pytest.skip(f"building the serial-h5py venv timed out: {' '.join(step)}")
                if done.returncode != 0:
                    pytest.skip(
                        f"cannot build a serial-h5py venv ({' '.join(step)}): {done.stderr[-500:]}"
                    )
            ready.write_text("\n".join(pins) + "\n")
    return python
