"""The book's reshape on write: (100, 480, 640) images into (100, 2, 240, 640), scaled down.

Run with (optional arguments: a folder for the files, a size)::

    mpirun -n 4 python -m mpi4py examples/reshape_on_write.py

A stack of T images of (2*Y, X) pixels becomes (T, 2, Y, X): each image split into its top
and bottom halves, the same elements in C order. Each rank reads its images and writes their
flat range into the new shape; a second run uses ``-1`` for one axis (as numpy does) and a
tiny memory budget, so blocks end mid-image. Checked: bitwise equal to numpy's ``reshape``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

import h5par


def main(folder: str | None = None, t: int = 50) -> int:
    """Reshape on write with h5par (two ways), compare with numpy."""
    comm = MPI.COMM_WORLD
    tmp = Path(folder or comm.bcast(tempfile.mkdtemp(prefix="h5par-") if comm.rank == 0 else None))
    src, out, small = tmp / "images.h5", tmp / "images_halves.h5", tmp / "images_small_steps.h5"
    y, x = 24, 64  # the book's 240 x 640 halves, scaled down
    images = np.random.default_rng(4).integers(0, 4096, (t, 2 * y, x), dtype=np.uint16)
    if comm.rank == 0:
        with h5py.File(src, "w") as f:
            f["images"] = images
    comm.Barrier()
    h5par.apply(src, out, [{"name": "reshape", "shape": [t, 2, y, x]}], overwrite=True)
    steps = h5par.apply(
        src, small, [{"name": "reshape", "shape": [-1, 2, y, x]}], memory="16KiB", overwrite=True
    )
    checks = {"several steps per rank": max(s["steps"] for s in steps.decomposition["/images"]) > 1}
    if comm.rank == 0:
        expected = images.reshape(t, 2, y, x)
        for path in (out, small):
            with h5py.File(path, "r") as f:
                halves = f["images"]
                checks[f"{path.name} shape"] = halves.shape == (t, 2, y, x)
                checks[f"{path.name} data"] = halves[...].tobytes() == expected.tobytes()
                checks[f"{path.name} top halves"] = np.array_equal(halves[:, 0], images[:, :y])
        print(f"{images.shape} -> {expected.shape}")
    bad = comm.bcast([k for k, ok in checks.items() if not ok] if comm.rank == 0 else None)
    if comm.rank == 0:
        print(f"reshape_on_write: {f'MISMATCH in {bad}' if bad else 'OK'} on {comm.size} rank(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None, *map(int, sys.argv[2:3])))
