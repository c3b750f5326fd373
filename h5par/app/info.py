"""What h5par runs on: versions, the MPI build of h5py, parallel-filter support."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

from h5par.parallel.comm import allgather, hosts, messaging, mpi_versions, resolve_comm
from h5par.version import __version__

__all__ = ["Environment", "by_rank", "environment", "format_environment"]

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
    unset = "unset (HDF5 default: locking on)"
    mine = (os.environ.get("HDF5_USE_FILE_LOCKING", unset), messaging())
    names, ranks = hosts(resolve_comm()), allgather(resolve_comm(), mine)
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
        hosts=f"{len(set(names))}: {by_rank(names)}",
        messaging=by_rank([m for _, m in ranks]),
        file_locking=by_rank([f for f, _ in ranks]),
    )


def by_rank(values: list[str]) -> str:
    """Each rank's value (by rank), grouped: the value when every rank has the same.

    A setting the ranks disagree on shows which ranks have which: an environment variable
    ``mpirun`` did not pass on to the other hosts (``-x NAME``) shows here.

    >>> by_rank(["n1", "n1", "n2", "n2"])
    'n1 (ranks 0-1), n2 (ranks 2-3)'
    >>> by_rank(["a", "b", "a"])
    'a (ranks 0, 2), b (rank 1)'
    >>> by_rank(["FALSE", "FALSE"])
    'FALSE'
    """
    ranks: dict[str, list[int]] = {}
    for rank, value in enumerate(values):
        ranks.setdefault(value, []).append(rank)
    if len(ranks) == 1:
        return values[0]
    return ", ".join(f"{value} ({_ranks(r)})" for value, r in ranks.items())


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
