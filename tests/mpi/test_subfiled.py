"""Subfiled output (a part file per rank, virtual datasets over them) and consolidate, 1-4 ranks."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from mpi4py import MPI

import h5par
from h5par import UsageError
from h5par.core.layout import OutputOptions

pytestmark = pytest.mark.mpi(min_size=1)

comm = MPI.COMM_WORLD
RNG = np.random.default_rng(31)
DATA = {
    "grid/x": RNG.normal(size=(301, 67)),
    "y": RNG.normal(size=(7, 40, 5)).astype("f4"),
    "small": np.arange(3.0),
    "scalar": np.float64(2.5),
}
SUBFILED = OutputOptions(layout="subfiled")
# name: (kernels, output of each dataset)
CASES: dict[str, tuple[list[dict[str, Any]], Any]] = {
    "clip": ([{"name": "clip", "min": 0.0}], lambda x: np.clip(x, x.dtype.type(0), None)),
    "copy": ([], lambda x: x),
    "reshape": ([{"name": "reshape", "shape": [-1]}], lambda x: x.reshape(-1)),
    "time-mean": ([{"name": "reduce", "op": "max", "axis": 0}], lambda x: np.max(x, 0)),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    path = str(tmp_path_factory.mktemp("subfiled")) if comm.rank == 0 else None
    folder = Path(comm.bcast(path))
    if comm.rank == 0:
        with h5py.File(folder / "in.h5", "w") as f:
            f["grid/x"] = DATA["grid/x"]
            f.create_dataset("y", data=DATA["y"], chunks=(1, 10, 5), compression="gzip")
            f["small"] = DATA["small"]
            f["scalar"] = DATA["scalar"]
            f["grid/x"].attrs["units"] = "K"
    comm.Barrier()
    return folder


def processed(case: str) -> list[str]:
    return ["grid/x", "y"] if case == "time-mean" else list(DATA)


def h5diff(a: Path, b: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["h5diff", str(a), str(b)], capture_output=True, text=True, check=False)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("memory", ["16KiB", "256MiB"])
def test_subfiled_output_reads_like_a_single_file_and_consolidates(folder, case, memory) -> None:
    kernels, reference = CASES[case]
    out, one = folder / f"{case}_{comm.size}.h5", folder / f"{case}_{comm.size}_one.h5"
    single = folder / f"{case}_{comm.size}_single.h5"
    names = ["/" + n for n in processed(case)] if kernels else None
    job = {"kernels": kernels, "datasets": names, "memory": memory, "overwrite": True}
    h5par.apply(folder / "in.h5", out, options=SUBFILED, **job)
    h5par.apply(folder / "in.h5", single, **job)
    h5par.consolidate(out, one, overwrite=True, memory=memory)
    if comm.rank == 0:
        parts = sorted(p.name for p in (folder / f"{out.name}.parts").iterdir())
        assert parts == [f"part-{r:05d}.h5" for r in range(comm.size)]
        assert not list(folder.glob(".*.h5par"))  # no work folder left
        with h5py.File(out, "r") as f, h5py.File(one, "r") as g:
            for name in processed(case):
                want = reference(DATA[name])
                assert f[name][...].tobytes() == want.tobytes(), name
                assert g[name][...].tobytes() == want.tobytes(), name
                assert not g[name].is_virtual
            virtual = {n: f[n].is_virtual for n in DATA}
            assert virtual["grid/x"] == bool(kernels)  # untouched small datasets: copied
            assert f["grid/x"].attrs["units"] == "K" and g["grid/x"].attrs["units"] == "K"
            if case == "clip":  # the parts' layout: the input's chunks and filters
                assert g["y"].compression == "gzip" and g["y"].chunks == (1, 10, 5)
        for a, b in ((out, single), (one, single)):
            diff = h5diff(a, b)
            assert diff.returncode == 0, diff.stdout + diff.stderr
    comm.Barrier()


def test_a_missing_part_is_refused_not_read_as_fill_values(folder) -> None:
    out = folder / f"lost_{comm.size}.h5"
    h5par.apply(
        folder / "in.h5", out, [{"name": "abs"}], "/grid/x", options=SUBFILED, memory="16KiB"
    )
    comm.Barrier()
    part = folder / f"{out.name}.parts" / f"part-{comm.size - 1:05d}.h5"
    if comm.rank == 0:
        part.rename(part.with_suffix(".away"))
    comm.Barrier()
    with pytest.raises(UsageError, match=f"source file '{out.name}.parts/{part.name}' is missing"):
        h5par.consolidate(out, folder / f"lost_{comm.size}_one.h5")
    assert not (folder / f"lost_{comm.size}_one.h5").exists()


def test_in_place_subfiled_is_refused(folder) -> None:
    with pytest.raises(UsageError, match="'subfiled' needs an output file"):
        h5par.apply(folder / "in.h5", in_place=True, kernels=[{"name": "abs"}], options=SUBFILED)


@pytest.mark.parametrize("layout", ["single", "subfiled"])
def test_large_untouched_datasets_are_copied_by_every_rank(folder, monkeypatch, layout) -> None:
    import h5par.engine.inspection

    monkeypatch.setattr(
        h5par.engine.inspection, "PARALLEL_COPY_BYTES", 1024
    )  # grid/x counts as large
    out = folder / f"copies_{layout}_{comm.size}.h5"
    chain = [{"name": "abs"}, {"name": "scale", "factor": 2.0}, {"name": "clip", "max": 1.0}]
    options = OutputOptions(layout=layout)
    h5par.apply(folder / "in.h5", out, chain, "/y", options=options, memory="16KiB")
    if comm.rank == 0:
        with h5py.File(out, "r") as f:
            assert f["grid/x"].is_virtual == f["y"].is_virtual == (layout == "subfiled")
            assert not f["small"].is_virtual
            assert f["grid/x"][...].tobytes() == DATA["grid/x"].tobytes()
            want = np.clip(np.abs(DATA["y"]) * np.float32(2.0), None, np.float32(1.0))
            assert f["y"][...].tobytes() == want.tobytes()
    comm.Barrier()
