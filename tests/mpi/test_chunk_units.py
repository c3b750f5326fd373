"""Whole-chunk units at 1-4 ranks: filtered outputs bitwise equal to numpy, chunks kept.

Budgets are chosen so that units are boxes of several chunks (not rows), single chunks, and
chunks larger than a unit's share; edges are uneven so boxes end inside the dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from mpi4py import MPI

import h5par
from h5par.core.decomposition import index_shape
from h5par.core.layout import OutputOptions

pytestmark = pytest.mark.mpi(min_size=1)

comm = MPI.COMM_WORLD
RNG = np.random.default_rng(18)
FIELD = RNG.normal(size=(26, 40, 37)).astype("f4")
CHUNKS = (4, 16, 8)
FILTERS: dict[str, dict[str, Any]] = {
    "gzip+shuffle": {"compression": "gzip", "compression_opts": 4, "shuffle": True},
    "fletcher32": {"fletcher32": True, "compression": "gzip"},
    "lzf": {"compression": "lzf"},
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    path = str(tmp_path_factory.mktemp("chunk_units")) if comm.rank == 0 else None
    folder = Path(comm.bcast(path))
    if comm.rank == 0:
        for name, filters in FILTERS.items():
            with h5py.File(folder / f"{name}.h5", "w") as f:
                f.create_dataset("field", data=FIELD, chunks=CHUNKS, **filters)
    comm.Barrier()
    return folder


def _whole_chunks(box: list[list[int]], shape: tuple[int, ...]) -> bool:
    return all(
        a % c == 0 and (b % c == 0 or b == n)
        for (a, b), c, n in zip(box, CHUNKS, shape, strict=True)
    )


@pytest.mark.parametrize("memory", ["24KiB", "96KiB", "1MiB"])
@pytest.mark.parametrize("name", list(FILTERS))
def test_filtered_output_is_numpy_clip_with_the_same_chunks(folder, name, memory) -> None:
    lzf = name == "lzf"
    # HDF5 cannot write LZF through mpio: several ranks write it subfiled
    options = OutputOptions(layout="subfiled") if lzf and comm.size > 1 else None
    out = folder / f"{name}-{memory}-{comm.size}.h5"
    result = h5par.apply(
        folder / f"{name}.h5", out, [{"name": "clip", "min": 0.0}], memory=memory,
        options=options, overwrite=True,
    )  # fmt: skip
    for share in result.decomposition["/field"]:
        assert share["region"] is None or _whole_chunks(share["region"], FIELD.shape)
    if comm.rank == 0:
        parts = sorted((out.parent / f"{out.name}.parts").glob("part-*.h5"))
        with h5py.File(parts[0] if parts else out, "r") as f:  # a part keeps the layout
            dset = f["field"]
            assert dset.chunks == CHUNKS
            assert dset.compression == FILTERS[name].get("compression")
            assert dset.fletcher32 == FILTERS[name].get("fletcher32", False)
        with h5py.File(out, "r") as f:  # subfiled: read through the virtual dataset
            got = f["field"][...]
        expect = np.clip(FIELD, np.float32(0), None)
        assert got.dtype == expect.dtype and got.tobytes() == expect.tobytes()
    comm.Barrier()


def test_units_of_the_run_are_whole_chunks(folder) -> None:
    from h5par.core.units import Target
    from h5par.engine.plan import units
    from h5par.kernels import Chain

    target = Target("/field", FIELD.shape, FIELD.dtype, FIELD.shape, FIELD.dtype, CHUNKS, {})
    for budget in (24 << 10, 96 << 10, 1 << 20):
        for box in units(target, Chain.from_specs([{"name": "clip", "min": 0}]), budget):
            edges = [[s.start, s.stop] for s in box]
            assert _whole_chunks(edges, FIELD.shape) and 0 not in index_shape(box)


BIG = RNG.normal(size=(18, 256, 300)).astype("f4")  # input chunks of 300 KiB: cached


@pytest.mark.parametrize("memory", ["8MiB", "64MiB"])
@pytest.mark.parametrize("stored", [(1, 256, 300), (9, 128, 100), (18, 64, 300)])
def test_rechunked_output_is_numpy_through_the_input_chunk_cache(folder, stored, memory) -> None:
    """Input chunks unlike the output's: units read parts of input chunks (cache sized)."""
    from h5par.core.sizes import parse_size
    from h5par.core.units import Target
    from h5par.engine.plan import input_cache
    from h5par.kernels import Chain

    clip = [{"name": "clip", "min": 0.0}]
    out_chunks = (4, 64, 64)
    target = Target("/field", BIG.shape, BIG.dtype, BIG.shape, BIG.dtype, out_chunks, {},
                    stored=stored)  # fmt: skip
    cached = input_cache(target, Chain.from_specs(clip), parse_size(memory)) is not None
    assert cached == (stored != (18, 64, 300))  # reused by units apart: the default cache
    src = folder / f"stored-{'x'.join(map(str, stored))}-{comm.size}.h5"
    if comm.rank == 0:
        with h5py.File(src, "w") as f:
            f.create_dataset("field", data=BIG, chunks=stored, compression="gzip", shuffle=True)
    comm.Barrier()
    out = folder / f"rechunked-{src.stem}-{memory}.h5"
    options = OutputOptions(chunks=out_chunks, compression="gzip")
    h5par.apply(src, out, clip, memory=memory, options=options, overwrite=True)
    if comm.rank == 0:
        with h5py.File(out, "r") as f:
            assert f["field"].chunks == out_chunks
            got = f["field"][...]
        assert got.tobytes() == np.clip(BIG, np.float32(0), None).tobytes()
    comm.Barrier()
