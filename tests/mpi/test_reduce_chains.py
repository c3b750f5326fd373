"""Global ``reduce`` statistics in chains with other kernels (issue 22, item 3), 1-4 ranks.

A global reduction followed by a reduction along axes, by a kernel with neighbours, or by
another global reduction gives numpy's statistics of the whole array, on plain and on
virtual inputs, at any memory budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from mpi4py import MPI

import h5par

pytestmark = pytest.mark.mpi(min_size=1)
comm = MPI.COMM_WORLD

OPS = ["min", "max", "sum", "mean", "std", "count", "histogram"]
DATA = np.random.default_rng(22).normal(scale=10.0, size=(12, 10, 8))


@pytest.fixture(name="folder")
def _folder(tmp_path_factory) -> Path:
    path = str(tmp_path_factory.mktemp("chains")) if comm.rank == 0 else None
    return Path(comm.bcast(path))


def write_input(folder: Path, virtual: bool) -> Path:
    """``/field`` holding DATA: an ordinary dataset, or a virtual one over two files."""
    path = folder / ("virtual.h5" if virtual else "plain.h5")
    if comm.rank == 0:
        with h5py.File(path, "w") as f:
            if not virtual:
                f.create_dataset("field", data=DATA, chunks=(2, 5, 8))
            else:
                layout = h5py.VirtualLayout(DATA.shape, DATA.dtype)
                for k, rows in enumerate((slice(0, 5), slice(5, 12))):
                    with h5py.File(folder / f"source{k}.h5", "w") as g:
                        g["field"] = DATA[rows]
                    layout[rows] = h5py.VirtualSource(f"source{k}.h5", "field", DATA[rows].shape)
                f.create_virtual_dataset("field", layout)
    comm.Barrier()
    return path


def check_statistics(got: dict[str, Any], x: np.ndarray, ops: list[str]) -> list[str]:
    """What differs from numpy's statistics ``ops`` of the whole array ``x`` (the contract's
    bounds); ``got`` may key them ``op#position``."""
    got = {op.split("#")[0]: v for op, v in got.items()}
    problems = [] if sorted(got) == sorted(ops) else [f"ops {sorted(got)}"]
    counts, edges = np.histogram(x, bins=10)
    exact = {"min": x.min(), "max": x.max(), "count": x.size}
    exact["histogram"] = {"counts": counts.tolist(), "edges": edges.tolist()}
    close = {op: getattr(x, op)() for op in ("sum", "mean", "std")}
    tol = 1e-12 * np.abs(x).sum()
    for op in set(ops) & set(got):
        want = exact.get(op, close.get(op))
        if (got[op] != want) if op in exact else not abs(got[op] - want) <= tol:
            problems.append(f"{op} = {got[op]}, numpy {want}")
    return problems


def read(path: Path) -> np.ndarray | None:
    if comm.rank != 0:
        return None
    with h5py.File(path, "r") as f:
        return np.asarray(f["field"][...])


@pytest.mark.parametrize("virtual", [False, True])
@pytest.mark.parametrize("memory", ["2KiB", "256MiB"])
@pytest.mark.parametrize("histogram", [False, True])  # with: a pre-pass for its range
def test_global_reduce_before_a_reduce_along_an_axis(folder, virtual, memory, histogram) -> None:
    src = write_input(folder, virtual)
    out = folder / f"mean_{virtual}_{memory}_{histogram}.h5"
    ops = OPS if histogram else OPS[:-1]
    kernels = [{"name": "reduce", "op": ops}, {"name": "reduce", "op": "mean", "axis": 0}]
    result = h5par.apply(src, out, kernels, memory=memory)
    problems = check_statistics(result.reductions["/field"], DATA, ops)
    got = read(out)
    if comm.rank == 0:
        assert got is not None
        if not np.allclose(got, DATA.mean(axis=0), rtol=0, atol=1e-12 * np.abs(DATA).sum()):
            problems.append("the time mean differs from numpy")
    assert comm.bcast(problems) == []


@pytest.mark.parametrize("memory", ["2KiB", "256MiB"])
def test_global_reduce_before_a_kernel_with_neighbours_counts_no_halo(folder, memory) -> None:
    src = write_input(folder, False)
    kernels = [{"name": "reduce", "op": OPS}, {"name": "smooth", "size": 3}]
    result = h5par.apply(src, folder / f"smooth_{memory}.h5", kernels, memory=memory)
    assert check_statistics(result.reductions["/field"], DATA, OPS) == []


@pytest.mark.parametrize("axis", [None, 1])
def test_a_histogram_after_another_global_reduce(folder, axis) -> None:
    src = write_input(folder, True)
    kernels: list[dict[str, Any]] = [
        {"name": "reduce", "op": ["min", "max", "sum", "count"]},
        {"name": "reduce", "op": ["mean", "std", "histogram"]},
    ]
    if axis is not None:
        kernels.append({"name": "reduce", "op": "max", "axis": axis})
    result = h5par.apply(src, folder / f"two_{axis}.h5", kernels, memory="2KiB")
    assert sorted(result.reductions["/field"]) == [
        "count#1", "histogram#2", "max#1", "mean#2", "min#1", "std#2", "sum#1"
    ]  # fmt: skip
    assert check_statistics(result.reductions["/field"], DATA, OPS) == []
