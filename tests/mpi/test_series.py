"""Series over many files at 1-4 ranks (issue 20): concat and stack bitwise equal to numpy,
time and ensemble statistics equal to numpy over the joined array, uneven file lengths,
gzip-chunked inputs, files ordered by a dataset, many units and ranks with no data.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from mpi4py import MPI

import h5par

pytestmark = pytest.mark.mpi(min_size=1)

comm = MPI.COMM_WORLD
LENGTHS = (3, 1, 4, 1, 5)  # time steps per dump: uneven
GRID = (13, 17)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    path = Path(comm.bcast(str(tmp_path_factory.mktemp("series")) if comm.rank == 0 else None))
    if comm.rank == 0:
        rng = np.random.default_rng(20)
        start = 0
        for k, n in enumerate(LENGTHS):  # dump_9 sorts after dump_10 by name, not by number
            with h5py.File(path / f"dump_{[0, 2, 9, 10, 11][k]}.h5", "w") as f:
                times = np.arange(start, start + n, dtype="f8")  # record axes may grow:
                time = f.create_dataset("time", data=times, maxshape=(None,), chunks=(8,))
                time.make_scale("time")
                lat = f.create_dataset("lat", data=np.linspace(-60, 60, GRID[0]))
                lat.make_scale("lat")
                data = rng.normal(280, 10, (n, *GRID)).astype("f4")
                t = f.create_dataset(
                    "T", data=data, chunks=(1, *GRID), compression="gzip", maxshape=(None, *GRID)
                )
                t.attrs["units"] = "K"
                t.dims[0].attach_scale(time)
                t.dims[1].attach_scale(lat)
                f["topo"] = rng.random(GRID)  # static: copied from the first file
                start += n
        for k in range(3):
            with h5py.File(path / f"member_{k}.h5", "w") as f:
                f["T"] = rng.normal(280, 10, (4, *GRID)).astype(">f8")  # big-endian
                f["mask"] = rng.integers(0, 3, GRID, dtype="i2")
    comm.Barrier()
    return path


def dumps(folder: Path) -> list[Path]:
    return [folder / f"dump_{i}.h5" for i in (0, 2, 9, 10, 11)]


def run(folder: Path, out: str, combine: str, pattern: str, **extra) -> None:
    job = {
        "input": {"path": str(folder / pattern), "combine": combine, **extra.pop("input", {})},
        "output": {"path": str(folder / out), "overwrite": True},
        "run": {"file_parallel_below": 0, "memory": extra.pop("memory", "256MiB")},
        **extra,
    }
    h5par.run(job, comm)


def joined(paths: list[Path], name: str, how=np.concatenate) -> np.ndarray:
    arrays = []
    for path in paths:
        with h5py.File(path) as f:
            arrays.append(f[name][...])
    return how(arrays)


def compare(
    folder: Path, out: str, expected: dict[str, np.ndarray], exact: bool = True
) -> list[str]:
    """Rank 0 compares the output's datasets with numpy's; every rank gets the problems."""
    problems = []
    if comm.rank == 0:
        with h5py.File(folder / out) as g:
            for name, want in expected.items():
                got = g[name][...]
                same = got.shape == want.shape and got.dtype == want.dtype
                same = same and (
                    got.tobytes() == want.tobytes() if exact else np.allclose(got, want, rtol=1e-12)
                )
                if not same:
                    problems.append(
                        f"{name}: {got.dtype}{got.shape} differs from {want.dtype}{want.shape}"
                    )
    return comm.bcast(problems)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("memory", ["2KiB", "256MiB"], ids=["many-units", "one-unit"])
def test_concat_joins_uneven_dumps_in_natural_order_bitwise(folder, memory) -> None:
    run(folder, f"series-{memory}.h5", "concat", "dump_*.h5", memory=memory)
    files = dumps(folder)
    expected = {
        "T": joined(files, "T"),
        "time": joined(files, "time"),
        "topo": joined(files[:1], "topo"),
    }
    assert compare(folder, f"series-{memory}.h5", expected) == []
    if comm.rank == 0:
        with h5py.File(folder / f"series-{memory}.h5") as g:
            assert [d.keys() for d in g["T"].dims] == [["time"], ["lat"], []]
            assert g["T"].chunks == (1, *GRID) and g["T"].compression == "gzip"
            assert g["T"].attrs["units"] == "K" and not g["T"].is_virtual


@pytest.mark.timeout(120)
@pytest.mark.parametrize("op", ["mean", "min", "max", "std"])
def test_time_statistics_over_the_joined_axis_equal_numpy(folder, op) -> None:
    reduce = [{"name": "reduce", "op": op, "axis": 0}]
    run(folder, f"time-{op}.h5", "concat", "dump_*.h5", kernels=reduce, memory="4KiB")
    data = joined(dumps(folder), "T")  # float32: min and max keep it, the others give float64
    want = getattr(np, op)(data if op in ("min", "max") else data.astype("f8"), axis=0)
    assert compare(folder, f"time-{op}.h5", {"T": want}, exact=op in ("min", "max")) == []


@pytest.mark.timeout(120)
def test_order_by_a_dataset_orders_the_files_by_its_first_value(folder) -> None:
    run(folder, "ordered.h5", "concat", "dump_*.h5", input={"order_by": "time"})
    by_time = sorted(dumps(folder), key=lambda p: h5py.File(p)["time"][0])
    expected = {"T": joined(by_time, "T"), "time": np.arange(sum(LENGTHS), dtype="f8")}
    assert compare(folder, "ordered.h5", expected) == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize("memory", ["2KiB", "256MiB"], ids=["many-units", "one-unit"])
def test_stack_adds_a_member_axis_bitwise(folder, memory) -> None:
    run(folder, f"ens-{memory}.h5", "stack", "member_*.h5", memory=memory)
    files = sorted(folder.glob("member_*.h5"))
    stacked = joined(files, "T", np.stack).astype(">f8")  # the inputs' byte order, kept
    expected = {"T": stacked, "mask": joined(files, "mask", np.stack)}
    expected["member"] = np.arange(3)
    assert compare(folder, f"ens-{memory}.h5", expected) == []
    if comm.rank == 0:
        with h5py.File(folder / f"ens-{memory}.h5") as g:
            assert list(g["T"].dims[0].keys()) == ["member"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("op", ["mean", "std", "max"])
def test_ensemble_statistics_equal_numpy(folder, op) -> None:
    reduce = [{"name": "reduce", "op": op, "axis": 0}]
    run(folder, f"ens-{op}.h5", "stack", "member_*.h5", kernels=reduce, memory="2KiB")
    files = sorted(folder.glob("member_*.h5"))
    want = getattr(np, op)(joined(files, "T", np.stack).astype("f8"), axis=0)
    assert compare(folder, f"ens-{op}.h5", {"T": want}, exact=op == "max") == []


@pytest.mark.timeout(120)
def test_a_moving_mean_over_dumps_and_an_anomaly_of_the_joined_array(folder) -> None:
    if comm.rank == 0:
        with h5py.File(folder / "clim.h5", "w") as f:
            f["T"] = np.linspace(270, 290, GRID[1], dtype="f4")  # broadcast over time and lat
    comm.Barrier()
    derived = [
        {
            "path": "/anomaly",
            "expression": "T - ref",
            "inputs": {"T": "/T", "ref": f"{folder}/clim.h5:/T"},
        }
    ]
    moving = [{"name": "moving_mean", "window": 3, "axis": 0}]
    run(folder, "moving.h5", "concat", "dump_*.h5", kernels=moving, derived=derived, memory="2KiB")
    data = joined(dumps(folder), "T")
    with h5py.File(folder / "clim.h5") as f:
        anomaly = data - f["T"][...]
    padded = np.concatenate([data[:1], data, data[-1:]]).astype("f8")  # numpy's "reflect" at 3
    smooth = ((padded[:-2] + padded[1:-1] + padded[2:]) / 3).astype("f4")
    problems = compare(folder, "moving.h5", {"anomaly": anomaly})
    problems += compare(folder, "moving.h5", {"T": smooth}, exact=False)
    assert problems == []
