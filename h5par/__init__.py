"""h5par: MPI-parallel HDF5 processing.

Public API (explicit re-exports; importing h5par does not initialise MPI until a function
that needs it is called)::

    h5par.apply(input, output, kernels, datasets=..., memory="256MiB")   # collective
    h5par.consolidate(subfiled_output, into)                             # collective
    h5par.File(path, mode, comm=None, driver="auto")                     # collective with mpio
    h5par.OutputOptions(chunks=..., compression=..., ...)
    h5par.run("job.toml" | {job dict} | h5par.load_job(...))             # collective, as `h5par run`
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

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
    "consolidate",
    "load_job",
    "run",
]

from .errors import CollectiveError, H5ParError, UsageError
from .jobs import Job, load_job
from .kernels import KERNELS
from .layout import OutputOptions

if TYPE_CHECKING:
    from .batch import JobResult, run
    from .io import File
    from .runner import Result, apply, consolidate

_LAZY = {
    "File": "io",
    "apply": "runner",
    "consolidate": "runner",
    "Result": "runner",
    "run": "batch",
    "JobResult": "batch",
}


def __getattr__(name: str) -> Any:
    # h5py (and with it MPI) is imported on first use of File/apply, not by `import h5par`.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'h5par' has no attribute {name!r}")
