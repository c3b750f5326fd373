"""Empty and extendible datasets keep their layout through a run (1-4 ranks).

An appendable dataset (an unlimited axis, here still of length 0) must come out chunked,
filtered and extendible as it went in, and what is appended to it later must read as its
fill value.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
from mpi4py import MPI

import h5par

pytestmark = pytest.mark.mpi(min_size=1)
comm = MPI.COMM_WORLD


def _shared_path(tmp_path_factory, name: str) -> Path:
    folder = str(tmp_path_factory.mktemp("empty")) if comm.rank == 0 else None
    return Path(comm.bcast(folder)) / name


@pytest.fixture
def appendable(tmp_path_factory) -> Path:
    """/log (0, 3) unlimited, chunks (1024, 3), gzip; /rows (5000, 3) the same, filled."""
    path = _shared_path(tmp_path_factory, "in.h5")
    if comm.rank == 0:
        with h5py.File(path, "w") as f:
            layout = {"maxshape": (None, 3), "chunks": (1024, 3), "compression": "gzip"}
            f.create_dataset("log", (0, 3), "f8", fillvalue=-1.0, **layout)
            f.create_dataset("rows", data=np.ones((5000, 3)), fillvalue=-1.0, **layout)
            f.create_dataset("fixed", (0, 3), "f8")  # contiguous: nothing to keep
    comm.Barrier()
    return path


def _properties(path: Path, name: str) -> list[str]:
    """``h5dump -p -H`` of one dataset (its layout, filters, fill value), file name dropped."""
    dump = subprocess.run(
        ["h5dump", "-p", "-H", "-d", name, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [line for line in dump.stdout.splitlines()[1:] if "SIZE" not in line]


@pytest.mark.timeout(120)
def test_an_empty_appendable_dataset_stays_chunked_filtered_and_appendable(appendable) -> None:
    out = appendable.with_name("out.h5")
    h5par.apply(appendable, out, [{"name": "clip", "min": 0}], comm=comm)
    if comm.rank == 0:
        for name in ("/log", "/rows"):  # /fixed: contiguous, written with fill_time never
            assert _properties(out, name) == _properties(appendable, name), name
        diff = subprocess.run(
            ["h5diff", "-c", str(appendable), str(out)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert diff.returncode == 0, diff.stdout + diff.stderr
        with h5py.File(out, "r+") as f:
            for name in ("log", "rows"):
                dset = f[name]
                assert (dset.chunks, dset.maxshape, dset.compression) == (
                    (1024, 3),
                    (None, 3),
                    "gzip",
                )
                n = dset.shape[0]
                dset.resize((n + 2000, 3))  # an appendable log: append rows, write one
                dset[n] = 7.0
                assert (dset[n] == 7).all() and (dset[n + 1 :] == -1).all(), name
                assert (dset[:n] == 1).all()
    comm.Barrier()


@pytest.mark.timeout(120)
def test_empty_datasets_in_subfiled_output_and_changed_layouts(appendable) -> None:
    for options, chunks in [
        (h5par.OutputOptions(chunks="auto", compression="gzip"), (1024, 3)),
        (h5par.OutputOptions(chunks=[4096, 3]), (4096, 3)),
        (h5par.OutputOptions(layout="subfiled"), None),  # virtual: no chunks of its own
    ]:
        out = appendable.with_name("changed.h5")
        h5par.apply(
            appendable,
            out,
            [{"name": "clip", "min": 0}],
            comm=comm,
            overwrite=True,
            options=options,
        )
        if comm.rank == 0:
            with h5py.File(out, "r") as f:
                assert f["log"].shape == (0, 3) and f["log"].chunks == chunks, options
                assert f["fixed"].shape == (0, 3)
        comm.Barrier()
