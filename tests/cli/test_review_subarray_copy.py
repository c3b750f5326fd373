"""Review 2026-12-02 (pre-existing, also on 04be6aa): an untouched dataset of a subarray
dtype (``('<f4', (3,))``) of at least PARALLEL_COPY_BYTES is copied through the sweep,
which reshapes the block h5py returns (shape + (3,)) to the dataset's shape:
``h5par: error: ValueError: cannot reshape array of size 300000 into shape (100000,)``,
and the job writes nothing. (allocate_missing's _filled has the same blind spot:
``TypeError: block dtype float32 differs from dataset dtype ('<f4', (3,))``.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

from h5par.engine.inspection import PARALLEL_COPY_BYTES

JOB = """version = 1
[input]
path = "in.h5"
datasets = ["/b"]
[output]
path = "out.h5"
[run]
memory = "8MiB"
[[kernels]]
name = "clip"
min = 0.0
"""


def test_a_large_untouched_subarray_dataset_is_copied(tmp_path: Path) -> None:
    n = PARALLEL_COPY_BYTES // 12 + 100_000
    dtype = np.dtype(("f4", (3,)))
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "in.h5", "w") as f:
        d = f.create_dataset("a", shape=(n,), chunks=(100_000,), dtype=dtype)
        for i in range(0, n, 1_000_000):
            d[i : i + 1_000_000] = rng.standard_normal((min(1_000_000, n - i), 3)).astype("f4")
        f["b"] = rng.standard_normal(10)
    (tmp_path / "job.toml").write_text(JOB)
    done = subprocess.run(
        [sys.executable, "-m", "h5par", "run", "job.toml", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    with h5py.File(tmp_path / "in.h5") as f, h5py.File(tmp_path / "out.h5") as g:
        assert g["a"].dtype == dtype
        assert g["a"][()].tobytes() == f["a"][()].tobytes()
