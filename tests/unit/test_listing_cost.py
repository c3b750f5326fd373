"""Listing and copying a hierarchy opens what it must, not every dataset (issue 23)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from h5par.hdf5 import hierarchy
from h5par.hdf5.hierarchy import build_output, dataset_attributes, dataset_paths


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "in.h5"
    with h5py.File(path, "w") as f:
        for g in range(3):
            for d in range(4):
                f.create_dataset(f"g{g}/v{d}", data=np.arange(5.0) + d)
        f["g0/v0"].attrs["units"] = "K"
        f["g1"].attrs["title"] = "station 1"
        f["g2/again"] = f["g0/v1"]  # a second hard link: listed once, linked in the output
        f["g2/soft"] = h5py.SoftLink("/g0/v2")
        f.create_dataset("t", data=np.arange(5.0)).make_scale("t")
    return path


def test_listing_counts_attributes_without_opening_datasets(source, monkeypatch) -> None:
    opened = []
    real = h5py.Group.__getitem__
    monkeypatch.setattr(h5py.Group, "__getitem__", lambda g, n: (opened.append(n), real(g, n))[1])
    with h5py.File(source, "r") as f:
        listing = dataset_attributes(f)
        assert dataset_paths(f) == list(listing)
    assert opened == []
    assert len(listing) == 13 and "/g2/again" not in listing and "/g2/soft" not in listing
    assert listing["/g0/v0"] == 1 and listing["/g0/v3"] == 0
    assert listing["/t"] >= 2  # CLASS and NAME of a dimension scale


def test_only_objects_with_attributes_are_revisited_after_the_build(
    source, tmp_path, monkeypatch
) -> None:
    copied = []
    real = hierarchy.copy_attrs
    monkeypatch.setattr(
        hierarchy, "copy_attrs", lambda s, d, *a, **k: (copied.append(s.name), real(s, d, *a, **k))
    )
    targets = {"/g0/v3": {"shape": (5,), "dtype": "f8"}}
    with h5py.File(source, "r") as src, h5py.File(tmp_path / "out.h5", "w") as dst:
        build_output(src, dst, targets)
        assert dst["g0/v0"].attrs["units"] == "K" and dst["g1"].attrs["title"] == "station 1"
        assert dst["t"].is_scale and dst["g2/again"] == dst["g0/v1"]
        assert dst["g2/soft"][()].tolist() == src["g0/v2"][()].tolist()
    assert copied == ["/", "/g0/v0", "/g1", "/t"]
