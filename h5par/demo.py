"""Built-in demo: a small simulation-like file, cleaned in parallel by h5par.

The input mimics a simulation dump: ``/step_NNN/temperature`` fields (float64, with
negative glitches and a ``dt`` attribute, as in the book's weather-station example) and
``/grid/x`` coordinates. The demo clips negatives to 0, converts to float32, compresses
with gzip + shuffle, and reports global statistics.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from .comm import bcast, rank, resolve_comm
from .errors import collective_errors
from .layout import OutputOptions
from .runner import Result, apply

if TYPE_CHECKING:
    from mpi4py import MPI

__all__ = ["run_demo", "write_demo_input"]

STEPS, SHAPE = 4, (120, 96, 64)
KERNELS: list[dict[str, Any]] = [
    {"name": "clip", "min": 0.0},
    {"name": "astype", "dtype": "float32"},
    {"name": "reduce", "op": ["min", "max", "mean", "std", "count"]},
]


def write_demo_input(path: Path) -> None:
    """Write the demo input (one process)."""
    rng = np.random.default_rng(2026)
    with h5py.File(path, "w") as f:
        f.attrs["title"] = "h5par demo: a toy simulation dump"
        f["grid/x"] = np.linspace(0.0, 1.0, SHAPE[-1])
        for step in range(STEPS):
            field = rng.normal(loc=280.0, scale=15.0, size=SHAPE)
            field[rng.random(SHAPE) < 0.01] = -9.0  # sensor glitches the job clips away
            dset = f.create_dataset(f"step_{step:03d}/temperature", data=field, chunks=(12, 96, 64))
            dset.attrs["dt"] = 10.0
            dset.attrs["units"] = "K"


def run_demo(folder: str | Path | None = None, comm: MPI.Comm | None = None) -> Result:
    """Write the demo input into ``folder`` (a new temporary one by default) and clean it.

    Collective over ``comm``.
    """
    comm = resolve_comm(comm)
    chosen = str(folder or tempfile.mkdtemp(prefix="h5par-demo-")) if rank(comm) == 0 else ""
    where = bcast(comm, chosen)
    src, dst = Path(where) / "demo_input.h5", Path(where) / "demo_clean.h5"
    with collective_errors(comm, "demo input"):
        if rank(comm) == 0:
            Path(where).mkdir(parents=True, exist_ok=True)
            write_demo_input(src)
    options = OutputOptions(compression="gzip", shuffle=True)
    return apply(
        src,
        dst,
        KERNELS,
        datasets="/step_*/temperature",
        overwrite=True,
        options=options,
        memory="16MiB",
        comm=comm,
    )
