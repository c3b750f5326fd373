"""h5par: MPI-parallel HDF5 processing.

Public API (explicit re-exports; importing h5par loads neither MPI nor h5py until a name
that needs them is used)::

    h5par.apply(input, output, kernels, datasets=..., memory="256MiB")   # collective
    h5par.consolidate(subfiled_output, into)                             # collective
    h5par.File(path, mode, comm=None, driver="auto")                     # collective with mpio
    h5par.OutputOptions(chunks=..., compression=..., ...)
    h5par.run("job.toml" | {job dict} | h5par.load_job(...))             # collective, as `h5par run`
    h5par.comm.world()                                                   # (rank, size)

The package's folders are its layers, each importing only from those below it::

    errors.py, version.py   exceptions and the version (standard library only)
    core/                   pure index arithmetic: decomposition, units, halos, selections
    kernels/                pure numpy block functions and reductions
    parallel/               the only MPI: communicators, agreement, watchdog, fault points
    hdf5/                   h5py wrappers: files and drivers, hierarchy copy, listing
    engine/                 jobs, plans, inspection, journal, work folder, the data pass
    app/                    command line, reports, status, info, demo, SLURM
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from h5par.core.layout import OutputOptions
from h5par.errors import CollectiveError, H5ParError, UsageError
from h5par.kernels import KERNELS
from h5par.version import __version__

__all__ = [
    "KERNELS",
    "CollectiveError",
    "File",
    "H5ParError",
    "Job",
    "JobResult",
    "OutputOptions",
    "Result",
    "UsageError",
    "__version__",
    "apply",
    "comm",
    "consolidate",
    "load_job",
    "run",
]

if TYPE_CHECKING:
    from h5par.engine.batch import JobResult, run
    from h5par.engine.jobs import Job, load_job
    from h5par.engine.runner import Result, apply, consolidate
    from h5par.hdf5.io import File
    from h5par.parallel import comm

#: Public names and the module that defines them, imported on first use.
_LAZY = {
    "File": "h5par.hdf5.io",
    "Job": "h5par.engine.jobs",
    "load_job": "h5par.engine.jobs",
    "apply": "h5par.engine.runner",
    "consolidate": "h5par.engine.runner",
    "Result": "h5par.engine.runner",
    "run": "h5par.engine.batch",
    "JobResult": "h5par.engine.batch",
}


def __getattr__(name: str) -> Any:
    if name == "comm":
        return importlib.import_module("h5par.parallel.comm")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'h5par' has no attribute {name!r}")
