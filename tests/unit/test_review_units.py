"""Defects found by review of whole-chunk units (each failed on arch/layers c3e6d87)."""

from __future__ import annotations

import numpy as np

from h5par.core.decomposition import MAX_TRANSFER_BYTES
from h5par.core.units import Target
from h5par.engine.plan import units
from h5par.kernels import Chain


def test_a_chunk_larger_than_one_mpi_transfer_still_has_units() -> None:
    """A gzip chunk of 3.1 GiB (HDF5 allows up to 4 GiB) is cut as steps cut elements:
    one MPI-IO transfer cannot hold it (it was refused as 'memory = 16 GiB is too small')."""
    shape = (1024, 1024, 400)
    target = Target("/x", shape, np.dtype("f8"), shape, np.dtype("f8"), shape, {})
    blocks = units(target, Chain.from_specs([{"name": "abs"}]), 16 << 30)
    assert blocks
    assert all(np.prod([s.stop - s.start for s in b]) * 8 <= MAX_TRANSFER_BYTES for b in blocks)
