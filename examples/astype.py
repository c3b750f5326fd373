"""The book's type conversion: float64 → float32 (1e256 becomes inf), integer overflow.

Run with (optional arguments: a folder for the files, a size)::

    mpirun -n 4 python -m mpi4py examples/astype.py

Float to float keeps IEEE semantics, as numpy and HDF5 do: 1e256 becomes inf. To integers
HDF5 saturates silently and numpy wraps; h5par's ``astype`` stops by default, naming the first
value that does not fit (and leaves no output file), or saturates / wraps on request. Checked:
every output bitwise equal to numpy, "saturate" equal to h5py's own ``dset.astype("int16")``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

import h5par


def main(folder: str | None = None, n: int = 10000) -> int:
    """Convert with h5par, compare with numpy and HDF5's own conversion."""
    comm = MPI.COMM_WORLD
    tmp = Path(folder or comm.bcast(tempfile.mkdtemp(prefix="h5par-") if comm.rank == 0 else None))
    src = tmp / "types.h5"
    rng = np.random.default_rng(8)
    big = rng.normal(size=n) * 10.0 ** rng.integers(-300, 300, n)  # 1e256 and friends
    big[:4] = 1e256, -1e256, 1e-300, np.nan
    counts = rng.integers(-40000, 40000, n, dtype=np.int32)  # int16 holds -32768..32767
    with np.errstate(over="ignore"):  # numpy warns about the overflow to inf
        single = big.astype(np.float32)
    if comm.rank == 0:
        with h5py.File(src, "w") as f:
            f["big"], f["counts"] = big, counts
    comm.Barrier()
    f4 = h5par.apply(
        src, tmp / "f4.h5", [{"name": "astype", "dtype": "float32"}], "/big", overwrite=True
    )
    try:
        h5par.apply(src, tmp / "i2.h5", [{"name": "astype", "dtype": "int16"}], "/counts")
        message = "no error"
    except h5par.H5ParError as exc:  # a CollectiveError on every rank (the error itself on 1)
        message = str(exc)
    outputs = {"error": tmp / "i2.h5"}
    for mode in ("saturate", "wrap"):
        kernel = {"name": "astype", "dtype": "int16", "overflow": mode}
        outputs[mode] = tmp / f"i2_{mode}.h5"
        h5par.apply(src, outputs[mode], [kernel], "/counts", overwrite=True)
    checks = {"overflow error": "does not fit int16" in message and not outputs["error"].exists()}
    if comm.rank == 0:
        print(f"overflow = 'error': {message}")
        with h5py.File(f4.output, "r") as f:
            checks["1e256 -> inf"] = f["big"][0] == np.inf and f["big"].dtype == np.float32
            checks["float32"] = f["big"][...].tobytes() == single.tobytes()
        with h5py.File(src, "r") as f, h5py.File(outputs["saturate"], "r") as g:
            saturated = np.clip(counts, -32768, 32767).astype(np.int16)
            checks["saturate"] = g["counts"][...].tobytes() == saturated.tobytes()
            checks["saturate == HDF5"] = np.array_equal(f["counts"].astype("int16")[...], saturated)
            checks["HDF5 float32 == numpy"] = np.array_equal(
                f["big"].astype("float32")[...], single, equal_nan=True
            )
        with h5py.File(outputs["wrap"], "r") as f:
            checks["wrap"] = f["counts"][...].tobytes() == counts.astype(np.int16).tobytes()
    bad = comm.bcast([k for k, ok in checks.items() if not ok] if comm.rank == 0 else None)
    if comm.rank == 0:
        print(f"astype: {f'MISMATCH in {bad}' if bad else 'OK'} on {comm.size} rank(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None, *map(int, sys.argv[2:3])))
