"""The book's weather stations: groups and attributes, processed in parallel with h5par.

Run with (optional arguments: a folder for the files, a size)::

    mpirun -n 4 python -m mpi4py examples/weather_stations.py

Rank 0 writes a group per station (/15, /20) with ``temperature`` and ``wind`` carrying the
attributes ``dt`` and ``start_time`` and prints them (the book's ``dset.attrs.items()``). All
ranks run an h5par job (a dict, as TOML gives it) turning Celsius into Kelvin. Checked: the
same groups, datasets and attributes (values and types), wind unchanged, temperature bitwise
equal to numpy's ``t + 273.15``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

import h5par

STATIONS = {"15": 1375204299, "20": 1375204883}  # station -> start_time (Unix seconds)


def tree(path: Path) -> dict[str, dict[str, str]]:
    """Every group and dataset below the root, its attributes as repr (value and numpy type)."""
    with h5py.File(path, "r") as f:
        names: list[str] = []
        f.visit(names.append)
        return {p: {k: repr(v) for k, v in f[p].attrs.items()} for p in names}


def main(folder: str | None = None, n: int = 1000) -> int:
    """Write the stations (rank 0), convert temperatures with h5par (all ranks), check."""
    comm = MPI.COMM_WORLD
    tmp = Path(folder or comm.bcast(tempfile.mkdtemp(prefix="h5par-") if comm.rank == 0 else None))
    src, out = tmp / "stations.h5", tmp / "stations_kelvin.h5"
    rng = np.random.default_rng(15)
    data = {s: (rng.normal(20, 8, n), rng.gamma(2.0, 1.5, 2 * n)) for s in STATIONS}
    if comm.rank == 0:
        with h5py.File(src, "w") as f:
            for station, (temperature, wind) in data.items():
                f[f"/{station}/temperature"] = temperature
                f[f"/{station}/temperature"].attrs.update(dt=10.0, start_time=STATIONS[station])
                f[f"/{station}/wind"] = wind
                f[f"/{station}/wind"].attrs.update(dt=5.0, start_time=STATIONS[station])
            for name, dset in f["15"].items():  # the book: iterate and print the attributes
                print(f"/15/{name}:", ", ".join(f"{k}={v}" for k, v in dset.attrs.items()))
    comm.Barrier()
    job = {
        "input": {"path": str(src), "datasets": ["/*/temperature"]},
        "output": {"path": str(out), "overwrite": True},
        "kernels": [{"name": "scale", "offset": 273.15}],
        "run": {"file_parallel_below": 1},  # even this small file is split over all ranks
    }
    done = h5par.run(job).files[0]
    checks = {"all ranks took part": done.ranks == list(range(comm.size))}
    checks["datasets"] = done.result.datasets == ["/15/temperature", "/20/temperature"]
    if comm.rank == 0:
        checks["hierarchy and attributes"] = tree(out) == tree(src)
        with h5py.File(out, "r") as f:
            for station, (temperature, wind) in data.items():
                kelvin = f[f"/{station}/temperature"][...].tobytes()
                checks[f"/{station}/temperature"] = kelvin == (temperature + 273.15).tobytes()
                checks[f"/{station}/wind"] = f[f"/{station}/wind"][...].tobytes() == wind.tobytes()
    bad = comm.bcast([k for k, v in checks.items() if not v] if comm.rank == 0 else None)
    if comm.rank == 0:
        print(f"weather_stations: {f'MISMATCH in {bad}' if bad else 'OK'} on {comm.size} rank(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None, *map(int, sys.argv[2:3])))
