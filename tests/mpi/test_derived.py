"""Derived datasets at 1-4 ranks (issue 19): bitwise equal to numpy on the whole arrays,
with broadcasting, another file, missing values, compressed inputs, uneven shapes, more
ranks than units, and statistics of the result.
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
SHAPE = (5, 37, 23)  # uneven: no rank count divides it


@pytest.fixture
def folder(tmp_path_factory) -> Path:
    path = Path(comm.bcast(str(tmp_path_factory.mktemp("derived")) if comm.rank == 0 else None))
    if comm.rank == 0:
        rng = np.random.default_rng(7)
        with h5py.File(path / "in.h5", "w") as f:
            for name in ("u", "v"):
                data = rng.normal(size=SHAPE).astype("f4")
                data[1, 2:4, 5] = -999.0
                d = f.create_dataset(
                    f"fields/{name}", data=data, chunks=(1, 16, 23), compression="gzip"
                )
                d.attrs["_FillValue"] = np.float32(-999.0)
            f["fields/p"] = np.linspace(1.0, 2.0, SHAPE[0]).reshape(-1, 1, 1)  # a profile
            f["fields/T"] = rng.normal(280, 5, SHAPE).astype(">f8")  # big-endian
        with h5py.File(path / "clim.h5", "w") as f:
            f["T"] = rng.normal(280, 1, SHAPE[1:])  # a climatology of one level: broadcast
            f["T"][0, 0] = np.nan
            f["T"].attrs["_FillValue"] = np.nan
            f["bad"] = np.zeros(SHAPE[:0:-1])  # (23, 37): broadcasts with nothing here
    comm.Barrier()
    return path


def check(folder: Path, out: str, path: str, expected) -> list[str]:
    """Rank 0 compares ``path`` in ``out`` with ``expected(inputs)``; every rank gets it."""
    problems = []
    if comm.rank == 0:
        with h5py.File(folder / "in.h5") as f, h5py.File(folder / "clim.h5") as c:
            arrays = {k: f[f"fields/{k}"][...] for k in ("u", "v", "p", "T")} | {"ref": c["T"][...]}
        with h5py.File(folder / out) as g:
            got, want = g[path][...], expected(arrays)
            if got.dtype != want.dtype or got.tobytes() != want.tobytes():
                problems.append(f"{path}: {got.dtype} differs from numpy's {want.dtype}")
    return comm.bcast(problems)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("memory", ["2KiB", "256MiB"], ids=["many-units", "one-unit"])
def test_wind_speed_with_a_profile_and_missing_values(folder, memory) -> None:
    result = h5par.apply(
        folder / "in.h5", folder / f"out{memory}.h5", datasets=[], memory=memory,
        derived=[{
            "path": "/fields/speed", "expression": "sqrt(u**2 + v**2) * p",
            "inputs": {"u": "/fields/u", "v": "/fields/v", "p": "/fields/p"},
            "dtype": "float32", "attrs": {"units": "m s-1"},
            "kernels": [{"name": "reduce", "op": ["mean", "max"]}],
        }],
    )  # fmt: skip

    def expected(a):
        speed = (np.sqrt(a["u"] ** 2 + a["v"] ** 2) * a["p"]).astype("f4")
        speed[(a["u"] == -999.0) | (a["v"] == -999.0)] = -999.0
        return speed

    assert check(folder, f"out{memory}.h5", "/fields/speed", expected) == []
    assert result.datasets == ["/fields/speed"]
    if comm.rank == 0:
        want = expected({k: h5py.File(folder / "in.h5")[f"fields/{k}"][...] for k in "uvp"})
        valid = want[want != -999.0]
        stats = result.reductions["/fields/speed"]
        assert stats["max"] == valid.max() and np.isclose(stats["mean"], valid.mean(dtype="f8"))
        with h5py.File(folder / f"out{memory}.h5") as g:
            speed = g["fields/speed"]
            assert speed.attrs["units"] == b"m s-1" and speed.attrs["_FillValue"] == -999.0
            assert speed.chunks == (1, 16, 23) and speed.compression == "gzip"
            assert (
                g["fields/u"][...].tobytes()
                == h5py.File(folder / "in.h5")["fields/u"][...].tobytes()
            )


@pytest.mark.timeout(120)
def test_anomaly_against_a_reference_file(folder) -> None:
    h5par.apply(
        folder / "in.h5", folder / "anomaly.h5", datasets=[], memory="4KiB",
        derived=[{"path": "/anomaly/T", "expression": "T - ref",
                  "inputs": {"T": "/fields/T", "ref": f"{folder}/clim.h5:/T"}}],
    )  # fmt: skip

    def expected(a):
        anomaly = a["T"] - a["ref"]
        anomaly[np.broadcast_to(np.isnan(a["ref"]), SHAPE)] = np.nan  # ref's _FillValue
        return anomaly

    assert check(folder, "anomaly.h5", "/anomaly/T", expected) == []


@pytest.mark.timeout(60)
def test_problems_are_found_before_anything_is_written(folder) -> None:
    cases = [
        ({"expression": "u + ref", "inputs": {"u": "/fields/u", "ref": "/fields/p2"}}, "/fields/p2 is not a dataset of the input"),
        ({"expression": "u + p", "inputs": {"u": "/fields/u", "p": f"{folder}/clim.h5:/bad"}}, r"inputs u \(shape \(5, 37, 23\)\) and p \(shape \(23, 37\)\) do not broadcast"),
    ]  # fmt: skip
    for extra, message in cases:
        with pytest.raises(UsageError, match=message):
            h5par.apply(folder / "in.h5", folder / "bad.h5", derived=[{"path": "/x", **extra}])
    with pytest.raises(UsageError, match=r"the output already has /fields/u"):
        h5par.apply(
            folder / "in.h5", folder / "bad.h5",
            derived=[{"path": "/fields/u", "expression": "v", "inputs": {"v": "/fields/v"}}],
        )  # fmt: skip
    assert not (folder / "bad.h5").exists()


def speed_over_p(u: np.ndarray, v: np.ndarray, p: np.ndarray) -> np.ndarray:
    """A user's function of named blocks: what a derived dataset's ``function`` receives."""
    return np.hypot(u, v) / p


@pytest.mark.timeout(120)
def test_python_callables_for_kernels_and_derived_datasets(folder) -> None:
    result = h5par.apply(
        folder / "in.h5", folder / "callables.h5", datasets=["/fields/T"], memory="4KiB",
        kernels=[{"name": "python", "function": lambda x: np.negative(x)}],
        derived=[{"path": "/fields/s", "function": speed_over_p,
                  "inputs": {"u": "/fields/u", "v": "/fields/v", "p": "/fields/p"}}],
    )  # fmt: skip
    assert result.datasets == ["/fields/T", "/fields/s"]

    def expected(a):
        speed = np.hypot(a["u"], a["v"]) / a["p"]
        speed[(a["u"] == -999.0) | (a["v"] == -999.0)] = -999.0
        return speed

    assert check(folder, "callables.h5", "/fields/s", expected) == []
    assert check(folder, "callables.h5", "/fields/T", lambda a: np.negative(a["T"])) == []
