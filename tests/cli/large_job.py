"""Helper for test_large.py: make / run / check a dataset far larger than the memory budget.

python large_job.py make PATH GIB       (one process)
mpirun -n 2 python large_job.py run IN OUT MEMORY   (prints one JSON line from rank 0)
python large_job.py check OUT           (one process, blockwise)
"""

from __future__ import annotations

import json
import sys

import numpy as np

ROW = 65536  # float64 elements per row: 512 KiB
BLOCK_ROWS = 64  # 32 MiB per block when making or checking


def pattern(first_row: int, rows: int) -> np.ndarray:
    i = np.arange(first_row * ROW, (first_row + rows) * ROW, dtype=np.int64)
    return ((i * 7919) % 20011 - 10000).astype(np.float64).reshape(rows, ROW)


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def make(path: str, gib: str) -> None:
    import h5py

    rows = int(float(gib) * 2**30) // (ROW * 8)
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("field", (rows, ROW), dtype="f8")
        for start in range(0, rows, BLOCK_ROWS):
            n = min(BLOCK_ROWS, rows - start)
            dset[start : start + n] = pattern(start, n)


def run(src: str, dst: str, memory: str) -> None:
    from mpi4py import MPI

    import h5par

    comm = MPI.COMM_WORLD
    base = rss_kib("VmRSS")
    result = h5par.apply(src, dst, [{"name": "clip", "min": 0.0}], memory=memory)
    growth = comm.gather(rss_kib("VmHWM") - base)
    if comm.rank == 0:
        print(
            json.dumps(
                {
                    "rss_growth_kib": growth,
                    "bytes_read": result.bytes_read,
                    "bytes_written": result.bytes_written,
                    "seconds": result.seconds,
                }
            )
        )


def check(path: str) -> None:
    import h5py

    with h5py.File(path, "r") as f:
        dset = f["field"]
        for start in range(0, dset.shape[0], BLOCK_ROWS):
            n = min(BLOCK_ROWS, dset.shape[0] - start)
            expected = np.clip(pattern(start, n), 0.0, None)
            if not np.array_equal(dset[start : start + n], expected):
                raise SystemExit(f"mismatch in rows {start}..{start + n}")
    print("blockwise check OK")


if __name__ == "__main__":
    {"make": make, "run": run, "check": check}[sys.argv[1]](*sys.argv[2:])
