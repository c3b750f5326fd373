"""Review 2026-12-02: allocate_missing is quadratic in the chunks of a dataset.

missing_chunks asks H5Dget_chunk_info_by_coord for every chunk of the grid; on HDF5 1.10
that call iterates the chunk index (0.65 s for 10 000 stored chunks, 2.7 s for 20 000),
and allocate_missing adds the chunks it writes to that index as it goes: 10 000 chunks
take 1 s, 40 000 take 20 s, a million would take hours on rank 0 (beating, so the
watchdog never fires) before a resumed or in-place run on several ranks starts.
read_direct_chunk looks a chunk up through the index (0.09 s for 20 000).
"""

from __future__ import annotations

import time
from pathlib import Path

import h5py
import numpy as np

from h5par.hdf5.allocation import allocate_missing


def test_allocating_eighty_thousand_chunks_takes_seconds_not_minutes(tmp_path: Path) -> None:
    n = 80_000  # quadratic: about 80 s; linear: about 2 s
    with h5py.File(tmp_path / "x.h5", "w") as f:
        d = f.create_dataset("x", shape=(n, 16), dtype="f8", chunks=(1, 16), compression="gzip")
        d[0] = 1.0
    with h5py.File(tmp_path / "x.h5", "r+") as f:
        tick = time.perf_counter()
        assert allocate_missing(f["x"]) == n - 1
        took = time.perf_counter() - tick
        assert f["x"][1:].tobytes() == np.zeros((n - 1, 16)).tobytes()
    assert took < 30, f"{took:.1f} s for {n} chunks"
