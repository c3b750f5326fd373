"""Two hosts simulated on this machine (``scripts/cluster.py``), for the tests of this folder.

Each host has its own network, host name and ``/tmp``; the rest of the file system is shared
(pytest's temporary folders, this checkout and its virtual environment are shared
explicitly, since they may lie below ``/tmp``). The tests skip, with one line, where the
machine cannot make namespaces (not root, tools missing).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def hosts(tmp_path_factory, cluster_script, mpitools) -> Iterator[SimpleNamespace]:
    """Hosts n1 and n2: ``cluster`` (scripts/cluster.py's Cluster) and ``on(host, argv, cwd,
    env, timeout, background)``."""
    with _hosts(tmp_path_factory, cluster_script, mpitools, "cluster") as made:
        yield made


@pytest.fixture(scope="session")
def slurm_hosts(tmp_path_factory, cluster_script, mpitools) -> Iterator[SimpleNamespace]:
    """Other hosts n1 and n2 (as :func:`hosts`) running SLURM: slurmctld on n1, a slurmd on
    each; ``env`` has ``SLURM_CONF`` for the client commands (run them on a host)."""
    with _hosts(tmp_path_factory, cluster_script, mpitools, "slurm-cluster") as made:
        try:
            made.cluster.start_slurm()
        except RuntimeError as exc:
            pytest.skip(str(exc))
        made.env = dict(os.environ, SLURM_CONF=str(made.cluster.slurm_conf))
        yield made


@pytest.fixture
def work(clean, tmp_path) -> Path:
    """A fresh folder with the module's ``clean`` input and job (not its output)."""
    for name in ("in.h5", "job.toml"):
        shutil.copy(clean / name, tmp_path / name)
    return tmp_path


@contextlib.contextmanager
def _hosts(tmp_path_factory, script: ModuleType, mpitools, name: str) -> Iterator[SimpleNamespace]:
    reason = script.unavailable()
    if reason:
        pytest.skip(reason)
    shared = [tmp_path_factory.getbasetemp(), REPO, Path(sys.prefix).resolve()]
    cluster = script.Cluster.up(tmp_path_factory.mktemp(name), hosts=2, shared=shared)
    try:
        yield SimpleNamespace(cluster=cluster, on=_on(cluster, mpitools))
    finally:
        cluster.down()


def _on(cluster, mpitools):
    def on(host: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None,
           timeout: float = 120, background: bool = False):  # fmt: skip
        """``argv`` run on ``host`` in ``cwd`` (its own process group, killed at ``timeout``);
        with ``background``, the started process (end it with ``mpitools.finish``)."""
        cmd = cluster.command(host, argv, cwd)
        if background:
            return mpitools.background(cmd, env=env)
        return mpitools.launch(cmd, env=env, timeout=timeout)

    return on
