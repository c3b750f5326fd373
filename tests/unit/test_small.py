"""Batches of small datasets (h5par.engine.small), on one process."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from h5par.core.layout import OutputOptions
from h5par.core.units import Target
from h5par.engine.config import configure
from h5par.engine.small import BATCH_DATASETS, batches

F8 = np.dtype("f8")


def target(path: str, n: int, *, filtered: bool = False) -> Target:
    create = {"shape": (n,), "dtype": F8, **({"compression": "gzip"} if filtered else {})}
    return Target(path, (n,), F8, (n,), F8, None, create)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f["x"] = np.zeros(3)
    return tmp_path / "in.h5"


def paths(groups: object) -> list[list[str]]:
    return [[t.path for t in group] for group in groups]  # type: ignore[attr-defined]


def test_small_datasets_form_batches_that_big_ones_interrupt(source: Path) -> None:
    work = configure(
        input=source, output=source.with_name("o.h5"), kernels=[{"name": "clip", "min": 0}]
    )
    small = [target(f"/s{i}", 10) for i in range(3)]
    big = target("/big", 2**22)
    assert paths(batches(work, [*small[:2], big, small[2]], 1)) == [
        ["/s0", "/s1"],
        ["/big"],
        ["/s2"],
    ]
    many = [target(f"/m{i}", 10) for i in range(BATCH_DATASETS + 3)]
    assert [len(g) for g in batches(work, many, 2)] == [BATCH_DATASETS, 3]


def test_what_needs_its_own_sweep_is_never_batched(source: Path) -> None:
    out = source.with_name("o.h5")
    clip = [{"name": "clip", "min": 0}]
    gz = [target("/a", 10, filtered=True), target("/b", 10, filtered=True)]
    work = configure(input=source, output=out, kernels=clip)
    assert paths(batches(work, gz, 1)) == [["/a", "/b"]]  # one process: sec2, no collective
    assert paths(batches(work, gz, 2)) == [["/a"], ["/b"]]  # collective filtered writes
    two = [target("/a", 10), target("/b", 10)]
    for other in (
        configure(input=source, in_place=True, kernels=clip),
        configure(input=source, output=out, kernels=clip, options=OutputOptions(layout="subfiled")),
        configure(input=source, output=out, kernels=[{"name": "reduce", "op": "mean"}]),
    ):
        assert paths(batches(other, two, 1)) == [["/a"], ["/b"]]


def test_a_small_file_on_one_process_is_opened_three_times(source: Path, monkeypatch) -> None:
    """Inspected, then read into the output it was created in: no reopening for the data pass."""
    from h5py._hl import files

    import h5par

    opened: list[str] = []
    real = files.make_fid
    monkeypatch.setattr(
        files,
        "make_fid",
        lambda name, mode, *a, **k: (opened.append(mode), real(name, mode, *a, **k))[1],
    )
    out = source.with_name("o.h5")
    h5par.apply(source, out, [{"name": "clip", "min": 1.0}])
    assert sorted(opened) == ["r", "r", "w"]  # input inspected, input read, output created
    with h5py.File(out) as f:
        assert np.array_equal(f["x"][()], np.ones(3))
    assert sorted(p.name for p in source.parent.iterdir()) == ["in.h5", "o.h5"]
