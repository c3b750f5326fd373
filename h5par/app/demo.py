"""Built-in demo: the book's weather stations plus a simulation field, cleaned in parallel.

``h5par demo DIR`` writes ``DIR/demo_input.h5`` and the job ``DIR/demo_job.toml``, then
runs that job (the same code path as ``h5par run``): NaNs filled, negatives clipped to 0,
float32, gzip + shuffle, global statistics per dataset. It also writes a simulation's
dumps (``DIR/dumps/``) and an ensemble (``DIR/ensemble/``) for the series jobs in ``jobs/``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from h5par.engine.batch import JobResult, run
from h5par.engine.jobs import load_job
from h5par.errors import UsageError
from h5par.parallel.agreement import collective_errors
from h5par.parallel.comm import bcast, hosts, rank, resolve_comm

if TYPE_CHECKING:
    from h5par.parallel.comm import Comm

__all__ = ["DEMO_JOB", "run_demo", "write_demo_dumps", "write_demo_input"]

FIELD_SHAPE = (48, 128, 128)  # time, y, x: 6 MiB of float64
DUMPS, DUMP_STEPS, MEMBERS = 12, 4, 5  # dumps of 4 time steps; ensemble members
GRID = (64, 96)  # y, x of the dumps and members

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


def write_demo_dumps(folder: Path) -> None:
    """Write a run's dumps and an ensemble's members (one process).

    ``folder/dumps/dump_NN.h5`` hold 4 time steps each, ``folder/ensemble/member_N.h5``
    one ensemble member each.
    """
    rng = np.random.default_rng(2027)
    for kind, count, steps in (
        ("dumps/dump_{:02d}", DUMPS, DUMP_STEPS),
        ("ensemble/member_{}", MEMBERS, 12),
    ):
        for k in range(count):
            path = folder / f"{kind.format(k)}.h5"
            path.parent.mkdir(parents=True, exist_ok=True)
            first = k * steps if kind.startswith("dumps") else 0
            _write_dump(path, np.arange(first, first + steps) * 0.5, rng)


def _write_dump(path: Path, times: np.ndarray, rng: np.random.Generator) -> None:
    """One dump: a record (time) axis that may grow, coordinates, a field and a static mask."""
    with h5py.File(path, "w") as f:
        time = f.create_dataset("time", data=times, maxshape=(None,), chunks=(64,))
        time.attrs["units"] = "hours since 2011-01-01T00:00"
        time.make_scale("time")
        y = f.create_dataset("y", data=np.arange(GRID[0], dtype="f4"))
        y.make_scale("y")
        shape = (len(times), *GRID)
        data = rng.normal(loc=285.0, scale=6.0, size=shape).astype(np.float32)
        field = f.create_dataset(
            "temperature", data=data, chunks=(1, *GRID), maxshape=(None, *GRID),
            compression="gzip", shuffle=True,
        )  # fmt: skip
        field.attrs["units"] = "K"
        field.dims[0].attach_scale(time)
        field.dims[1].attach_scale(y)
        f["land"] = (rng.random(GRID) < 0.3).astype(np.int8)  # static: not joined


def run_demo(folder: str | Path | None = None, comm: Comm | None = None) -> JobResult:
    """Write the demo input and job into ``folder``, run it. Collective over ``comm``.

    Without ``folder``, a new temporary folder; when the ranks run on several hosts, a new
    one in the current folder instead (each host has its own temporary folder).
    """
    comm = resolve_comm(comm)
    near = Path.cwd() if len(set(hosts(comm))) > 1 else None
    chosen = ""
    if rank(comm) == 0:
        chosen = str(folder or tempfile.mkdtemp(prefix="h5par-demo-", dir=near))
    where = Path(bcast(comm, chosen))
    with collective_errors(comm, "demo input"):
        if rank(comm) == 0:
            where.mkdir(parents=True, exist_ok=True)
            write_demo_input(where / "demo_input.h5")
            write_demo_dumps(where)
            (where / "demo_job.toml").write_text(DEMO_JOB)
    try:
        with collective_errors(comm, "demo folder"):
            if not (where / "demo_job.toml").is_file():
                raise UsageError(
                    f"demo folder {str(where)!r} is not seen by every rank (valid: a folder on "
                    "a file system every host sees: h5par demo FOLDER)"
                )
    except UsageError:
        if rank(comm) == 0 and folder is None:
            shutil.rmtree(where, ignore_errors=True)  # the one made here
        raise
    return run(load_job(where / "demo_job.toml"), comm=comm, overwrite=True)
