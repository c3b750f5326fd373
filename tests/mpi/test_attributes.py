"""h5par.apply's attribute edits and history line at 1-4 ranks (issue 19): in place every
rank makes the same metadata calls; a new output gets them from rank 0's structure.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from mpi4py import MPI

import h5par
from h5par import UsageError

pytestmark = pytest.mark.mpi(min_size=1)

comm = MPI.COMM_WORLD
EDITS = {
    "attrs": {"/": {"title": "edited"}, "/g/T": {"units": "degC", "valid_max": 40}},
    "delete_attrs": {"/g/T": ["valid_min"], "/": ["source"]},
    "history": "2026-12-06T00:00:00Z: test",
}


@pytest.fixture
def source(tmp_path_factory) -> Path:
    folder = Path(comm.bcast(str(tmp_path_factory.mktemp("attrs")) if comm.rank == 0 else None))
    if comm.rank == 0:
        with h5py.File(folder / "in.h5", "w") as f:
            t = f.create_dataset("g/T", data=np.arange(-50, 50, dtype=">i2"), chunks=(8,))
            t.attrs.update({"units": "K", "valid_min": np.int16(0), "valid_max": np.int16(99)})
            f.attrs.update({"source": "model", "history": "earlier"})
    comm.Barrier()
    return folder


@pytest.mark.timeout(120)
@pytest.mark.parametrize("in_place", [False, True], ids=["output", "in-place"])
def test_edits_at_any_rank_count(source, in_place) -> None:
    src, out = source / "in.h5", source / "out.h5"
    dest = src if in_place else out
    h5par.apply(
        src, None if in_place else out, [{"name": "clip", "min": 0}], in_place=in_place,
        memory="64B", **EDITS,
    )  # fmt: skip
    problems = []
    if comm.rank == 0:
        with h5py.File(dest) as f:
            t = f["g/T"]
            if t[...].tolist() != np.clip(np.arange(-50, 50), 0, None).tolist():
                problems.append("data")
            if dict(t.attrs) != {"units": b"degC", "valid_max": 40}:
                problems.append(f"T attrs {dict(t.attrs)}")
            if t.attrs["valid_max"].dtype.newbyteorder("=") != np.dtype("i2"):  # the data's type
                problems.append(f"valid_max dtype {t.attrs['valid_max'].dtype}")
            history = "2026-12-06T00:00:00Z: test\nearlier"  # variable length, as it was
            if (
                f.attrs["history"] != history
                or "source" in f.attrs
                or f.attrs["title"] != b"edited"
            ):
                problems.append(f"root attrs {dict(f.attrs)}")
    assert comm.bcast(problems) == []


@pytest.mark.timeout(60)
def test_a_missing_attribute_is_refused_on_every_rank_before_writing(source) -> None:
    before = (source / "in.h5").read_bytes() if comm.rank == 0 else None
    with pytest.raises(UsageError, match=r"no attribute 'long_name' to delete"):
        h5par.apply(source / "in.h5", in_place=True, delete_attrs={"/g/T": ["long_name"]})
    if comm.rank == 0:
        assert (source / "in.h5").read_bytes() == before
