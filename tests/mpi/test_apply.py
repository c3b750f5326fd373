"""h5par.apply under mpirun (1-4 ranks) equals plain numpy on the whole array.

Every rank runs each test; rank 0 writes inputs and checks outputs with plain h5py, and
the verdict is broadcast so all ranks pass or fail together.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from mpi4py import MPI

import h5par
from h5par import CollectiveError, OutputOptions, UsageError

pytestmark = pytest.mark.mpi(min_size=1)

comm = MPI.COMM_WORLD


@pytest.fixture
def shared(tmp_path_factory) -> Path:
    """A folder every rank sees (created on rank 0)."""
    path = str(tmp_path_factory.mktemp("apply")) if comm.rank == 0 else None
    return Path(comm.bcast(path))


def make_input(path: Path, data: np.ndarray, **create) -> None:
    if comm.rank == 0:
        with h5py.File(path, "w") as f:
            f.create_dataset("grp/data", data=data, **create)
            f["grp/data"].attrs["units"] = "K"
            f["other"] = np.arange(6, dtype="i2")
    comm.Barrier()


def read_output(path: Path, name: str = "grp/data") -> np.ndarray | None:
    if comm.rank != 0:
        return None
    try:  # a failure here must still reach agree() on every rank
        with h5py.File(path, "r") as f:
            return f[name][...]
    except Exception:
        return None


def agree(ok: bool) -> bool:
    return bool(comm.bcast(ok))


def same_bits(a: np.ndarray | None, b: np.ndarray) -> bool:
    return (
        a is not None and a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    )


def data_for(shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(math.prod(shape) + len(shape))
    x = rng.normal(scale=100.0, size=shape)
    x.flat[:: max(1, x.size // 5)] = -0.0
    return x


def book_where(x: np.ndarray) -> np.ndarray:
    y = x.copy()
    y[x < 0] = -1 * x[x < 0]
    return y


def with_nans_filled(x: np.ndarray) -> np.ndarray:
    y = x.copy()
    y[np.isnan(y)] = -1.0
    return y


def saturate_int16(x: np.ndarray) -> np.ndarray:
    return np.trunc(np.clip(x, -32768, 32767)).astype(np.int16)


CASES: dict[str, tuple[list[dict], Callable[[np.ndarray], np.ndarray]]] = {
    "clip": ([{"name": "clip", "min": 0.0}], lambda x: np.clip(x, 0.0, None)),
    "scale_abs": (
        [{"name": "scale", "factor": 0.5, "offset": 3}, {"name": "abs"}],
        lambda x: np.abs(x * 0.5 + 3),
    ),
    "where": ([{"name": "where", "condition": "x < 0", "value": "-1 * x"}], book_where),
    "fill": ([{"name": "fill", "value": -1.0}], with_nans_filled),
    "astype_f4": ([{"name": "astype", "dtype": "float32"}], lambda x: x.astype(np.float32)),
    "astype_i2": (
        [
            {"name": "scale", "factor": 400},
            {"name": "astype", "dtype": "int16", "overflow": "saturate"},
        ],
        lambda x: saturate_int16(x * 400),
    ),
    "broadcast": (
        [{"name": "broadcast", "index": -1}],
        lambda x: np.broadcast_to(x[-1:], x.shape).copy(),
    ),
    "python": ([{"name": "python", "function": "numpy:negative"}], np.negative),
    "clip_f4_broadcast": (
        [
            {"name": "clip", "max": 50.0},
            {"name": "astype", "dtype": "float32"},
            {"name": "broadcast", "index": 1},
        ],
        lambda x: np.broadcast_to(np.clip(x, None, 50.0).astype(np.float32)[1:2], x.shape).copy(),
    ),
}
SHAPES = [(1,), (3, 4), (10, 3), (3, 5, 7), (2, 3, 4, 5), (101, 13)]
STORAGE = {
    "contiguous": {},
    "chunked_gzip": {"chunks": True, "compression": "gzip", "shuffle": True},
}


@pytest.mark.parametrize(
    ("case", "shape", "storage", "memory"),
    [
        (case, shape, storage, memory)
        for (case, shape), storage, memory in zip(
            itertools.product(CASES, SHAPES),
            itertools.cycle(STORAGE),
            itertools.cycle(["1KiB", "3KiB", "256MiB"]),
            strict=False,
        )
    ],
)
def test_kernels_match_numpy(shared, case, shape, storage, memory) -> None:
    kernels, reference = CASES[case]
    x = data_for(shape)
    if case == "fill":
        x.flat[1::3] = np.nan
    if (case == "broadcast" or case == "clip_f4_broadcast") and shape[0] < 2:
        pytest.skip("broadcast of row 1 needs two rows")
    create = dict(STORAGE[storage])
    if create.get("chunks"):
        create["chunks"] = tuple(max(1, n // 2) for n in shape)
    make_input(shared / "in.h5", x, **create)
    result = h5par.apply(
        shared / "in.h5", shared / "out.h5", kernels, datasets="/grp/*", memory=memory
    )
    assert result.datasets == ["/grp/data"]
    got = read_output(shared / "out.h5")
    assert agree(same_bits(got, reference(x)))


def test_chunked_gzip_shuffle_output_by_all_ranks(shared) -> None:
    x = data_for((97, 31))
    make_input(shared / "in.h5", x)
    options = OutputOptions(
        chunks=[8, 31], compression="gzip", compression_level=6, shuffle=True, fletcher32=True
    )
    h5par.apply(
        shared / "in.h5",
        shared / "out.h5",
        [{"name": "clip", "min": 0.0}],
        datasets="/grp/data",
        options=options,
        memory="8KiB",
    )
    ok = True
    if comm.rank == 0:
        with h5py.File(shared / "out.h5") as f:
            d = f["grp/data"]
            ok = (d.chunks, d.compression, d.compression_opts, d.shuffle, d.fletcher32) == (
                (8, 31),
                "gzip",
                6,
                True,
                True,
            )
            ok = ok and same_bits(d[...], np.clip(x, 0.0, None)) and dict(d.attrs) == {"units": "K"}
            ok = ok and f["other"][...].tolist() == list(range(6))
    assert agree(ok)


def test_reshape_like_the_book(shared) -> None:
    x = data_for((10, 48, 64)).astype(np.float32)
    make_input(shared / "in.h5", x)
    h5par.apply(
        shared / "in.h5",
        shared / "out.h5",
        [{"name": "reshape", "shape": [10, 2, 24, 64]}],
        datasets="/grp/data",
        memory="4KiB",
    )
    assert agree(same_bits(read_output(shared / "out.h5"), x.reshape(10, 2, 24, 64)))


def test_reduce_statistics_independent_of_ranks(shared) -> None:
    x = data_for((201, 7))
    x[5, 3] = np.nan
    make_input(shared / "in.h5", x, chunks=(16, 7))
    ops = ["min", "max", "sum", "mean", "std", "count", "histogram"]
    result = h5par.apply(
        shared / "in.h5",
        None,
        [{"name": "reduce", "op": ops, "skipna": True, "bins": 12}],
        memory="2KiB",
    )
    got = result.reductions["/grp/data"]
    finite = x[~np.isnan(x)]
    counts, edges = np.histogram(finite, bins=12)
    assert got["min"] == finite.min() and got["max"] == finite.max() and got["count"] == finite.size
    assert got["histogram"] == {"counts": counts.tolist(), "edges": edges.tolist()}
    tol = 1e-12 * np.abs(finite).sum()
    assert abs(got["sum"] - finite.sum()) <= tol
    assert abs(got["mean"] - finite.mean()) <= tol
    assert abs(got["std"] - finite.std()) <= tol
    assert result.output is None


def test_in_place_clip(shared) -> None:
    x = data_for((33, 5))
    make_input(shared / "in.h5", x, chunks=(4, 5))
    result = h5par.apply(
        shared / "in.h5", kernels=[{"name": "clip", "min": 0.0}], in_place=True, memory="1KiB"
    )
    assert result.output == str(shared / "in.h5")
    assert agree(same_bits(read_output(shared / "in.h5"), np.clip(x, 0.0, None)))


def test_more_ranks_than_rows_and_scalars(shared) -> None:
    if comm.rank == 0:
        with h5py.File(shared / "in.h5", "w") as f:
            f["one"] = np.array([[-1.0, 2.0, -3.0]])
            f["scalar"] = -4.5
            f["empty"] = np.zeros((0, 3))
    comm.Barrier()
    h5par.apply(shared / "in.h5", shared / "out.h5", [{"name": "abs"}], memory="1KiB")
    ok = True
    if comm.rank == 0:
        with h5py.File(shared / "out.h5") as f:
            ok = (
                f["one"][...].tolist() == [[1.0, 2.0, 3.0]]
                and f["scalar"][()] == 4.5
                and f["empty"].shape == (0, 3)
            )
    assert agree(ok)


def test_error_on_values_reaches_every_rank_and_leaves_no_output(shared) -> None:
    x = np.zeros((40, 3))
    x[-1, -1] = 1e9  # only the last rank's slab holds the bad value
    make_input(shared / "in.h5", x)
    with pytest.raises(
        CollectiveError if comm.size > 1 else h5par.H5ParError,
        match=r"value 1000000000.0 at index \(39, 2\) does not fit int16",
    ):
        h5par.apply(
            shared / "in.h5",
            shared / "out.h5",
            [{"name": "astype", "dtype": "int16"}],
            memory="1KiB",
        )
    leftovers = sorted(p.name for p in shared.iterdir()) if comm.rank == 0 else []
    assert agree(leftovers == ["in.h5"] or comm.rank != 0)


def test_bad_arguments_are_usage_errors_on_every_rank(shared) -> None:
    make_input(shared / "in.h5", np.zeros(4))
    with pytest.raises(UsageError, match="unknown kernel 'clamp'"):
        h5par.apply(shared / "in.h5", shared / "out.h5", [{"name": "clamp"}])
    with pytest.raises(UsageError, match="matches no dataset"):
        h5par.apply(shared / "in.h5", shared / "out.h5", [{"name": "abs"}], datasets=["/nope/*"])
    with pytest.raises(UsageError, match="memory: invalid size 'lots'"):
        h5par.apply(shared / "in.h5", shared / "out.h5", [{"name": "abs"}], memory="lots")
    comm.Barrier()
    assert not (shared / "out.h5").exists()


def test_existing_output_needs_overwrite(shared) -> None:
    make_input(shared / "in.h5", np.arange(5.0) - 2)
    if comm.rank == 0:
        (shared / "out.h5").write_bytes(b"precious")
    comm.Barrier()
    with pytest.raises(UsageError, match="exists") as info:
        h5par.apply(shared / "in.h5", shared / "out.h5", [{"name": "abs"}])
    assert "(pass overwrite=True to replace it)" in str(info.value)  # Python's way, not --overwrite
    assert "--overwrite" not in str(info.value)
    with pytest.raises(UsageError, match=r"exists \(pass overwrite=True to replace it\)"):
        h5par.consolidate(shared / "in.h5", shared / "out.h5")
    with pytest.raises(UsageError, match=r"output.overwrite = true or pass overwrite=True"):
        h5par.run({"version": 1, "input": {"path": str(shared / "in.h5")},
                   "output": {"path": str(shared / "out.h5")}})  # fmt: skip
    assert (shared / "out.h5").read_bytes() == b"precious"
    comm.Barrier()
    h5par.apply(shared / "in.h5", shared / "out.h5", [{"name": "abs"}], overwrite=True)
    assert agree(same_bits(read_output(shared / "out.h5"), np.abs(np.arange(5.0) - 2)))


def test_file_modes_and_fillvalue_like_the_book(shared) -> None:
    path = shared / "modes.h5"
    with h5par.File(path, "w") as f:
        dset = f.create_dataset("filled", (4, 3), dtype="f8", fillvalue=42)
        assert dset[...].min() == 42 and dset[...].max() == 42
    with pytest.raises((FileExistsError, OSError)):
        h5par.File(path, "w-")
    with h5par.File(path, "a") as f:
        assert f["filled"].fillvalue == 42
    with h5par.File(path, "r") as f:
        assert f.driver == ("mpio" if comm.size > 1 else "sec2")
    with pytest.raises(UsageError, match="mode 'q'"):
        h5par.File(path, "q")


def test_fill_value_elements_pass_through_and_stay_out_of_statistics(shared) -> None:
    x = data_for((40, 7))
    x[::3, 2] = -9999.0
    if comm.rank == 0:
        with h5py.File(shared / "in.h5", "w") as f:
            f["t"] = x
            f["t"].attrs["_FillValue"] = -9999.0
    comm.Barrier()
    kernels = [
        {"name": "clip", "min": 0.0},
        {"name": "reduce", "op": ["min", "count", "mean"]},
        {"name": "astype", "dtype": "int16", "overflow": "saturate"},
    ]
    result = h5par.apply(shared / "in.h5", shared / "out.h5", kernels, memory="1KiB")
    fills = x == -9999.0
    clipped = np.clip(x, 0.0, None)
    expected = np.trunc(clipped).astype(np.int16)
    expected[fills] = -9999
    stats = result.reductions["/t"]
    assert stats["count"] == int((~fills).sum()) and stats["min"] == clipped[~fills].min()
    assert abs(stats["mean"] - clipped[~fills].mean()) <= 1e-12 * np.abs(clipped[~fills]).sum()
    ok = True
    if comm.rank == 0:
        with h5py.File(shared / "out.h5") as f:
            ok = same_bits(f["t"][...], expected) and f["t"].attrs["_FillValue"].dtype == np.int16
            ok = ok and f["t"].attrs["_FillValue"] == -9999
    assert agree(ok)
    h5par.apply(shared / "in.h5", shared / "raw.h5", kernels[:1], respect_fill_value=False)
    assert agree(same_bits(read_output(shared / "raw.h5", "t"), np.clip(x, 0.0, None)))


def test_packed_data_is_not_unpacked_twice(shared) -> None:
    if comm.rank == 0:
        with h5py.File(shared / "in.h5", "w") as f:
            f["p"] = np.arange(10, dtype=np.int16)
            f["p"].attrs["scale_factor"] = 0.01
    comm.Barrier()
    with pytest.raises(UsageError, match="dataset /p is packed \\(scale_factor attributes\\)"):
        h5par.apply(shared / "in.h5", shared / "out.h5", [{"name": "scale", "factor": 0.01}])
    h5par.apply(shared / "in.h5", shared / "out.h5", [{"name": "clip", "max": 5}])
    assert agree(
        same_bits(
            read_output(shared / "out.h5", "p"), np.clip(np.arange(10, dtype=np.int16), None, 5)
        )
    )
