"""The book's chunking and filters: h5par writes gzip (+ shuffle, fletcher32) in parallel.

Run with (optional arguments: a folder for the files, a size)::

    mpirun -n 4 python -m mpi4py examples/compression.py

Rank 0 writes a smooth (N, 256) float64 field in steps of 1/8, contiguous and unfiltered.
h5par copies it into chunked outputs (``OutputOptions``): gzip, gzip + shuffle, gzip + shuffle
+ fletcher32 with explicit chunks; each rank writes whole chunks of its rows (collective
filtered writes). LZF from several ranks is refused (HDF5 1.10 corrupts it). Checked: data
bitwise unchanged, filters and chunks as asked, every output smaller than the input.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

import h5par

VARIANTS = {
    "gzip": h5par.OutputOptions(compression="gzip", chunks="auto"),
    "gzip+shuffle": h5par.OutputOptions(compression="gzip", shuffle=True, chunks="auto"),
    "gzip+shuffle+fletcher32": h5par.OutputOptions(
        compression="gzip", compression_level=9, shuffle=True, fletcher32=True, chunks=[64, 256]
    ),
}


def main(folder: str | None = None, n: int = 2000) -> int:
    """Compress with several filter pipelines; check data, filters, chunks and sizes."""
    comm = MPI.COMM_WORLD
    tmp = Path(folder or comm.bcast(tempfile.mkdtemp(prefix="h5par-") if comm.rank == 0 else None))
    src = tmp / "field.h5"
    rows, cols = np.mgrid[0:n, 0:256]
    field = np.round(1000 * np.sin(rows / 50.0) * np.cos(cols / 20.0)) / 8  # steps of 1/8
    if comm.rank == 0:
        with h5py.File(src, "w") as f:
            f["field"] = field
    comm.Barrier()
    for name, options in VARIANTS.items():
        h5par.apply(src, tmp / f"field_{name}.h5", options=options, overwrite=True)
    checks: dict[str, bool] = {}
    if comm.size > 1:  # refused: HDF5 1.10's collective filtered writes corrupt LZF chunks
        try:
            h5par.apply(src, tmp / "lzf.h5", options=h5par.OutputOptions(compression="lzf"))
            checks["lzf refused"] = False
        except h5par.UsageError as exc:
            checks["lzf refused"] = "LZF output cannot be written" in str(exc)
    if comm.rank == 0:
        print(f"{'input (contiguous)':<26} {field.nbytes:>9} bytes")
        for name, options in VARIANTS.items():
            with h5py.File(tmp / f"field_{name}.h5", "r") as f:
                dset, size = f["field"], f["field"].id.get_storage_size()
                print(f"{name:<26} {size:>9} bytes, chunks {dset.chunks}")
                checks[f"{name} data"] = dset[...].tobytes() == field.tobytes()
                checks[f"{name} smaller"] = size < field.nbytes
                want = ("gzip", bool(options.shuffle), bool(options.fletcher32))
                checks[f"{name} filters"] = (
                    dset.compression,
                    dset.shuffle,
                    dset.fletcher32,
                ) == want
                chunks = dset.chunks if options.chunks == "auto" else tuple(options.chunks)
                checks[f"{name} chunks"] = dset.chunks == chunks
    bad = sorted({k for ranks in comm.allgather(checks) for k, ok in ranks.items() if not ok})
    if comm.rank == 0:
        print(f"compression: {f'MISMATCH in {bad}' if bad else 'OK'} on {comm.size} rank(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None, *map(int, sys.argv[2:3])))
