"""End to end: post-process a simulation's snapshots (fill, clip, float32, gzip, statistics).

Run with (optional arguments: a folder for the files, a size)::

    mpirun -n 4 python -m mpi4py examples/simulation_postprocess.py

Rank 0 writes one file per time step: a 3-d ``/fields/density`` with NaNs and negative noise, a
``/grid/z`` coordinate, a ``time`` attribute. One h5par job (a dict, as TOML gives it) does them
all, small files whole on one rank each. Checked per step against numpy: fill, clip, float32
bitwise, gzip + shuffle, smaller; min/max/count exact, mean/std within 1e-12; grid, time kept.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

import h5par

GZIP = {"compression": "gzip", "shuffle": True}
KERNELS = [
    {"name": "fill", "missing": "nan", "value": 0.0},
    {"name": "clip", "min": 0.0},
    {"name": "astype", "dtype": "float32"},
    {"name": "reduce", "op": ["min", "max", "mean", "std", "count"]},
]


def main(folder: str | None = None, n: int = 32) -> int:
    """Write snapshots, run the post-processing job on all ranks, verify every step."""
    comm = MPI.COMM_WORLD
    tmp = Path(folder or comm.bcast(tempfile.mkdtemp(prefix="h5par-") if comm.rank == 0 else None))
    rng, z = np.random.default_rng(13), np.linspace(0.0, 1.0, n // 2)
    fields = rng.normal(1.0, 0.6, (4, n // 2, n, n)).round(4)  # 4 time steps, compressible
    fields[rng.random(fields.shape) < 0.02] = np.nan
    if comm.rank == 0:
        for step, density in enumerate(fields):
            with h5py.File(tmp / f"snap_{step:03d}.h5", "w") as f:
                f["/fields/density"], f["/grid/z"], f.attrs["time"] = density, z, step / 2
    comm.Barrier()
    job = {
        "input": {"path": str(tmp / "snap_*.h5"), "datasets": ["/fields/*"]},
        "output": {"path": str(tmp / "{stem}_post.h5"), "overwrite": True, **GZIP},
        "kernels": KERNELS,
    }
    checks: dict[str, bool] = {}
    for step, (done, raw) in enumerate(zip(h5par.run(job).files, fields, strict=True)):
        expected = np.clip(np.where(np.isnan(raw), 0.0, raw), 0.0, None).astype(np.float32)
        stats = done.result.reductions["/fields/density"]  # the same on every rank
        exact = {"min": expected.min(), "max": expected.max(), "count": expected.size}
        checks.update({f"{step} {op}": stats[op] == want for op, want in exact.items()})
        mean, std = expected.mean(dtype=np.float64), expected.std(dtype=np.float64)
        checks[f"{step} mean"] = abs(stats["mean"] - mean) <= 1e-12 * mean
        checks[f"{step} std"] = abs(stats["std"] - std) <= 1e-12 * std
        if comm.rank == 0:
            with h5py.File(done.result.output, "r") as f:
                dset, out = f["/fields/density"], f["/fields/density"][...]
                checks[f"{step} filled, clipped"] = not np.isnan(out).any() and out.min() >= 0
                checks[f"{step} f4"] = dset.dtype == "f4" and out.tobytes() == expected.tobytes()
                checks[f"{step} gzip+shuffle"] = dset.compression == "gzip" and dset.shuffle
                checks[f"{step} smaller"] = dset.id.get_storage_size() < raw.nbytes / 2
                checks[f"{step} kept"] = f.attrs["time"] == step / 2 and np.array_equal(
                    f["/grid/z"], z
                )
            print(f"{Path(done.input).name} on rank {done.ranks}: mean {stats['mean']:.5f}")
    bad = sorted({k for ranks in comm.allgather(checks) for k, ok in ranks.items() if not ok})
    if comm.rank == 0:
        status = f"MISMATCH in {bad}" if bad else "OK"
        print(f"simulation_postprocess: {status} on {comm.size} rank(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None, *map(int, sys.argv[2:3])))
