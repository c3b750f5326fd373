"""Built-in demo: the book's weather stations plus a simulation field, cleaned in parallel.

``h5par demo DIR`` writes ``DIR/demo_input.h5`` and the job ``DIR/demo_job.toml``, then
runs that job (the same code path as ``h5par run``): NaNs filled, negatives clipped to 0,
float32, gzip + shuffle, global statistics per dataset.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from h5par.engine.batch import JobResult, run
from h5par.engine.jobs import load_job
from h5par.parallel.agreement import collective_errors
from h5par.parallel.comm import bcast, rank, resolve_comm

if TYPE_CHECKING:
    from h5par.parallel.comm import Comm

__all__ = ["DEMO_JOB", "run_demo", "write_demo_input"]

FIELD_SHAPE = (48, 128, 128)  # time, y, x: 6 MiB of float64

DEMO_JOB = """\
# The demo job: written by `h5par demo`, rerun with `h5par run demo_job.toml --overwrite`.
version = 1

[input]
path = "demo_input.h5"
datasets = ["/*/temperature", "/*/wind", "/simulation/field"]

[output]
path = "{stem}_clean.h5"
compression = "gzip"
shuffle = true

[[kernels]]
name = "fill"          # NaN -> 0
value = 0.0

[[kernels]]
name = "clip"          # the book's "clip negative values to 0"
min = 0.0

[[kernels]]
name = "astype"
dtype = "float32"

[[kernels]]
name = "reduce"
op = ["min", "max", "mean", "std", "count"]

[run]
memory = "16MiB"
file_parallel_below = "1MiB"   # the demo file is small: still split it across ranks
"""


def write_demo_input(path: Path) -> None:
    """Write the demo input (one process)."""
    rng = np.random.default_rng(2026)
    with h5py.File(path, "w") as f:
        f.attrs["title"] = "h5par demo: weather stations and a simulation dump"
        for station, start in (("15", "2011-01-01T00:00"), ("20", "2011-01-01T06:00")):
            temperature = rng.normal(loc=20.0, scale=8.0, size=1024)
            dset = f.create_dataset(f"{station}/temperature", data=temperature)
            dset.attrs["dt"] = 10.0
            dset.attrs["start_time"] = start
        wind = f.create_dataset("15/wind", data=rng.normal(loc=2.0, scale=3.0, size=2048))
        wind.attrs["dt"] = 5.0
        wind.attrs["start_time"] = "2011-01-01T00:00"
        field = rng.normal(loc=1.0, scale=2.0, size=FIELD_SHAPE)
        field[rng.random(FIELD_SHAPE) < 0.001] = np.nan
        sim = f.create_dataset("simulation/field", data=field, chunks=(4, 128, 128))
        sim.attrs["units"] = "m/s"
        f["simulation/time"] = np.arange(FIELD_SHAPE[0]) * 0.5
        for name, mean in (("u", 3.0), ("v", -1.0)):  # wind components (jobs/wind_speed.toml)
            component = rng.normal(loc=mean, scale=4.0, size=FIELD_SHAPE).astype(np.float32)
            wind = f.create_dataset(f"simulation/{name}", data=component, chunks=(4, 128, 128))
            wind.attrs["units"] = "m s-1"


def run_demo(folder: str | Path | None = None, comm: Comm | None = None) -> JobResult:
    """Write the demo input and job into ``folder`` (default: a new temporary one), run it.

    Collective over ``comm``.
    """
    comm = resolve_comm(comm)
    chosen = str(folder or tempfile.mkdtemp(prefix="h5par-demo-")) if rank(comm) == 0 else ""
    where = Path(bcast(comm, chosen))
    with collective_errors(comm, "demo input"):
        if rank(comm) == 0:
            where.mkdir(parents=True, exist_ok=True)
            write_demo_input(where / "demo_input.h5")
            (where / "demo_job.toml").write_text(DEMO_JOB)
    return run(load_job(where / "demo_job.toml"), comm=comm, overwrite=True)
