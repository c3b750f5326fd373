"""What h5par runs on: versions, the MPI build of h5py, parallel-filter support."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

from h5par.parallel.comm import hosts, messaging, mpi_versions, resolve_comm
from h5par.version import __version__

__all__ = ["Environment", "environment", "format_environment", "placement"]

_SERIAL_FIX = (
    "h5py was built without MPI: shared-file output from several ranks is unavailable. "
    "Fix: `make setup` (Debian) or `conda env create -f environment.yml` (h5py=*=mpi_openmpi_*), "
    "or rebuild: CC=mpicc HDF5_MPI=ON pip install --no-build-isolation --no-binary=h5py h5py"
)


@dataclass(frozen=True)
class Environment:
    """Versions and capabilities of the running stack (all strings for printing)."""

    h5par: str
    python: str
    numpy: str
    h5py: str
    hdf5: str
    mpi4py: str
    mpi_library: str
    h5py_mpi: bool
    parallel_filters: bool
    ranks: int
    hosts: str
    messaging: str
    file_locking: str

    def rows(self) -> list[tuple[str, str]]:
        """Label/value pairs in display order."""
        return [
            ("h5par", self.h5par),
            ("Python", self.python),
            ("numpy", self.numpy),
            ("h5py", self.h5py),
            ("HDF5", self.hdf5),
            ("mpi4py", self.mpi4py),
            ("MPI library", self.mpi_library),
            ("h5py built with MPI", "yes" if self.h5py_mpi else "no"),
            (
                "parallel filters (compressed parallel writes)",
                "yes" if self.parallel_filters else "no",
            ),
            ("ranks", str(self.ranks)),
            ("hosts", self.hosts),
            ("MPI messaging layer", self.messaging),
            ("HDF5_USE_FILE_LOCKING", self.file_locking),
        ]


def environment() -> Environment:
    """Collect versions and capabilities. Collective over COMM_WORLD (initialises MPI)."""
    import numpy

    from h5par.hdf5.io import hdf5_versions

    h5py_version, hdf5, h5py_mpi, filters = hdf5_versions()
    mpi4py_version, library = mpi_versions()
    names = hosts(resolve_comm())
    return Environment(
        h5par=__version__,
        python=platform.python_version(),
        numpy=numpy.__version__,
        h5py=h5py_version,
        hdf5=hdf5,
        mpi4py=mpi4py_version,
        mpi_library=library,
        h5py_mpi=h5py_mpi,
        parallel_filters=filters,
        ranks=len(names),
        hosts=placement(names),
        messaging=messaging(),
        file_locking=os.environ.get("HDF5_USE_FILE_LOCKING", "unset (HDF5 default: locking on)"),
    )


def placement(names: list[str]) -> str:
    """Which ranks run on which host, given each rank's host name.

    >>> placement(["n1", "n1", "n2", "n2"])
    '2: n1 (ranks 0-1), n2 (ranks 2-3)'
    >>> placement(["a", "b", "a"])
    '2: a (ranks 0, 2), b (rank 1)'
    >>> placement(["login"])
    '1: login'
    """
    ranks: dict[str, list[int]] = {}
    for rank, name in enumerate(names):
        ranks.setdefault(name, []).append(rank)
    if len(ranks) == 1:
        return f"1: {names[0]}"
    return f"{len(ranks)}: " + ", ".join(f"{n} ({_ranks(r)})" for n, r in ranks.items())


def _ranks(ranks: list[int]) -> str:
    if len(ranks) == 1:
        return f"rank {ranks[0]}"
    if ranks == list(range(ranks[0], ranks[-1] + 1)):
        return f"ranks {ranks[0]}-{ranks[-1]}"
    return "ranks " + ", ".join(map(str, ranks))


def format_environment(env: Environment) -> str:
    """The report ``h5par info`` prints."""
    width = max(len(label) for label, _ in env.rows())
    lines = [f"{label:<{width}}  {value}" for label, value in env.rows()]
    if not env.h5py_mpi:
        lines.append("")
        lines.append(_SERIAL_FIX)
    return "\n".join(lines)
