"""Allocating the missing chunks of a partly written dataset (one process, no MPI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from h5par.hdf5.allocation import allocate_missing, missing_chunks, partly_allocated

CASES: dict[str, dict[str, Any]] = {
    "gzip": {"compression": "gzip", "shuffle": True},
    "fletcher32": {"compression": "gzip", "fletcher32": True},
    "unfiltered": {},
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", ["<f8", ">i4", "u1"])
def test_missing_chunks_get_the_fill_value_and_values_stay(
    tmp_path: Path, case: str, dtype: str
) -> None:
    with h5py.File(tmp_path / "a.h5", "w") as f:
        x = f.create_dataset("x", (23, 10, 7), dtype, chunks=(5, 4, 7), fillvalue=9, **CASES[case])
        x[0:5] = 1
        x[20:23, 8:10] = 2  # an edge chunk
        before = x[()]
        assert partly_allocated(x)
        written = {tuple(s.start for s in box) for box in missing_chunks(x)}
        assert len(written) == 5 * 3 - 3 - 1
        assert allocate_missing(x) == len(written)
        assert not partly_allocated(x) and list(missing_chunks(x)) == []
        assert x.id.get_num_chunks() == 15
    with h5py.File(tmp_path / "a.h5", "r") as f:
        assert f["x"][()].tobytes() == before.tobytes()
        assert (f["x"][10:15] == 9).all()


def test_datasets_with_no_chunk_or_every_chunk_are_left_alone(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "a.h5", "w") as f:
        empty = f.create_dataset("empty", (10, 10), "f4", chunks=(5, 5), compression="gzip")
        full = f.create_dataset("full", data=np.ones((10, 10)), chunks=(5, 5))
        flat = f.create_dataset("flat", data=np.ones(10))
        zero = f.create_dataset("zero", (0, 4), "f4", chunks=(1, 4), maxshape=(None, 4))
        for d in (empty, full, flat, zero):
            assert not partly_allocated(d) and allocate_missing(d) == 0
        assert empty.id.get_num_chunks() == 0  # HDF5 allocates it when mpio opens it


def test_a_compound_fill_value_is_written_as_it_is(tmp_path: Path) -> None:
    kind = np.dtype([("a", "<i2"), ("b", "<f4")])
    fill = np.array((3, 1.5), kind)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        x = f.create_dataset("x", (8,), kind, chunks=(2,), fillvalue=fill, compression="gzip")
        x[0:2] = np.array([(1, 1.0), (2, 2.0)], kind)
        assert allocate_missing(x) == 3
        assert x[()].tolist() == [(1, 1.0), (2, 2.0)] + [(3, 1.5)] * 6
