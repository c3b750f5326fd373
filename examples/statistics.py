"""Global statistics in parallel: min, max, sum, mean, std, count and a histogram.

Run with (optional arguments: a folder for the files, a size)::

    mpirun -n 4 python -m mpi4py examples/statistics.py

A reduce-only job (no output file): each rank reduces its blocks, the partial results are
combined across ranks. NaNs are skipped (``skipna``) and elements equal to a dataset's
``_FillValue`` attribute (the CF convention) are left out. Checked against numpy on the whole
array of valid values, as the contract promises: min, max, count and histogram bitwise; sum,
mean and std within 1e-12 (relative to the sum of |x|, the mean of |x|, and the std).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

import h5par

OPS = ["min", "max", "sum", "mean", "std", "count", "histogram"]


def main(folder: str | None = None, n: int = 2000) -> int:
    """Reduce three datasets with h5par and compare every statistic with numpy."""
    comm = MPI.COMM_WORLD
    tmp = Path(folder or comm.bcast(tempfile.mkdtemp(prefix="h5par-") if comm.rank == 0 else None))
    rng = np.random.default_rng(12)
    field = rng.normal(1.0, 3.0, (n, 100))
    field[rng.random(field.shape) < 0.01] = np.nan  # missing samples
    temperature = rng.normal(15.0, 8.0, n * 10)
    temperature[::7] = -9999.0  # the station's _FillValue: no measurement
    counts = rng.poisson(40, (n, 50)).astype(np.int32)
    data: dict[str, np.ndarray] = {
        "/field": field,
        "/station/temperature": temperature,
        "/counts": counts,
    }
    if comm.rank == 0:
        with h5py.File(tmp / "stats.h5", "w") as f:
            for path, values in data.items():
                f[path] = values
            f["/station/temperature"].attrs["_FillValue"] = -9999.0
    comm.Barrier()
    job = {
        "input": {"path": str(tmp / "stats.h5")},
        "kernels": [{"name": "reduce", "op": OPS, "skipna": True, "bins": 20}],
        "run": {"memory": "256KiB", "file_parallel_below": 1},  # many blocks on every rank
    }
    reductions = h5par.run(job).files[0].result.reductions  # checked on every rank
    checks: dict[str, bool] = {}
    for path, values in data.items():
        got, valid = reductions[path], values[~np.isnan(values) & (values != -9999.0)]
        hist, edges = np.histogram(valid, bins=20)
        exact = {"min": valid.min(), "max": valid.max(), "count": valid.size}
        exact["histogram"] = {"counts": hist.tolist(), "edges": edges.tolist()}
        checks.update({f"{path} {op}": got[op] == want for op, want in exact.items()})
        checks[f"{path} sum"] = abs(got["sum"] - valid.sum()) <= 1e-12 * np.abs(valid).sum()
        checks[f"{path} mean"] = abs(got["mean"] - valid.mean()) <= 1e-12 * np.abs(valid).mean()
        checks[f"{path} std"] = abs(got["std"] - valid.std()) <= 1e-12 * valid.std()
        if comm.rank == 0:
            print(f"{path}: " + ", ".join(f"{op}={got[op]:.6g}" for op in OPS[:-1]))
    bad = sorted({k for ranks in comm.allgather(checks) for k, ok in ranks.items() if not ok})
    if comm.rank == 0:
        print(f"statistics: {f'MISMATCH in {bad}' if bad else 'OK'} on {comm.size} rank(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None, *map(int, sys.argv[2:3])))
