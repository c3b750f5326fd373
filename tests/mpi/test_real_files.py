"""Files written by other tools (../shared/data/real) go through kernels at 1-4 ranks."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from mpi4py import MPI

import h5par

pytestmark = pytest.mark.mpi(min_size=1)
comm = MPI.COMM_WORLD

FILES = [
    "hdf5-tools_thyperslab.h5",  # 1 MB contiguous float64, 32 rows
    "hdf5-test_be_data.h5",  # big-endian, deflate/fletcher32/nbit/scale-offset/shuffle
    "hdf5-examples_h5ex_d_lzf.h5",  # LZF (an h5py filter)
    "jhdf_chunked_v4_datasets.hdf5",  # every 1.10 chunk index, unlimited dims
    "hdf5-tools_tfloat16.h5",  # float16
    "jhdf_float_special_values_latest.hdf5",  # NaN, inf, -0.0
    "nexus_epics_example.h5",  # 1024x1024 gzip image, hard-linked twice, NeXus
]


def numeric_datasets(path: Path) -> list[str]:
    names: list[str] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "iuf" and obj.shape:
            names.append("/" + name)

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return names


@pytest.mark.parametrize("name", FILES)
def test_clip_negatives_in_real_files(real_data, tmp_path_factory, name) -> None:
    src = real_data / name
    out = (
        Path(comm.bcast(str(tmp_path_factory.mktemp("real")) if comm.rank == 0 else None))
        / "out.h5"
    )
    datasets = comm.bcast(numeric_datasets(src) if comm.rank == 0 else None)
    options = h5par.OutputOptions(compression="gzip") if "lzf" in name and comm.size > 1 else None
    result = h5par.apply(
        src, out, [{"name": "clip", "min": 0}], datasets=datasets, memory="4KiB", options=options
    )
    problems = []
    if comm.rank == 0:
        try:
            with h5py.File(src, "r") as fin, h5py.File(out, "r") as fout:
                for path in result.datasets:
                    x = fin[path][...]
                    expected = np.clip(x, 0, None).astype(x.dtype.newbyteorder("="))
                    got = fout[path][...]
                    if got.dtype != expected.dtype or got.tobytes() != expected.tobytes():
                        problems.append(path)
        except Exception as exc:  # reach the bcast below on every rank
            problems.append(repr(exc))
    assert sorted(result.datasets) == sorted(set(datasets))
    assert comm.bcast(problems) == []


def test_lzf_output_from_several_ranks_is_refused_unless_subfiled(
    real_data, tmp_path_factory
) -> None:
    if comm.size == 1:
        pytest.skip("one rank writes LZF fine")
    out = Path(comm.bcast(str(tmp_path_factory.mktemp("lzf")) if comm.rank == 0 else None)) / "o.h5"
    source = real_data / "hdf5-examples_h5ex_d_lzf.h5"
    with pytest.raises(h5par.UsageError, match="LZF output cannot be written by"):
        h5par.apply(source, out, [{"name": "abs"}])
    assert not out.exists()
    subfiled = h5par.OutputOptions(layout="subfiled")
    h5par.apply(source, out, [{"name": "abs"}], options=subfiled, memory="1KiB")
    if comm.rank == 0:  # each part written by one process: LZF chunks read back intact
        with h5py.File(source) as f, h5py.File(out) as g:
            for name in f:
                assert g[name][...].tobytes() == np.abs(f[name][...]).tobytes()
    comm.Barrier()


def shared_dir(tmp_path_factory, name: str) -> Path:
    return Path(comm.bcast(str(tmp_path_factory.mktemp(name)) if comm.rank == 0 else None))


def test_family_input_read_by_every_rank(real_data, tmp_path_factory) -> None:
    src = real_data / "hdf5-test_family_v16-%06d.h5"
    out = shared_dir(tmp_path_factory, "family") / "out.h5"
    h5par.apply(
        src,
        out,
        [{"name": "scale", "factor": -1}],
        driver="family",
        memb_size=5 * 1024,
        memory="2KiB",
    )
    ok = True
    if comm.rank == 0:
        with (
            h5py.File(src, "r", driver="family", memb_size=5 * 1024) as fin,
            h5py.File(out) as fout,
        ):
            ok = fout["dataset"][...].tobytes() == (fin["dataset"][...] * -1).tobytes()
    assert comm.bcast(ok)


def test_userblock_is_preserved(real_data, tmp_path_factory) -> None:
    src = real_data / "jhdf_test_userblock_latest.hdf5"
    out = shared_dir(tmp_path_factory, "userblock") / "out.h5"
    h5par.apply(src, out, [{"name": "abs"}])
    ok = True
    if comm.rank == 0:
        with h5py.File(out) as f:
            ok = f.userblock_size == 1024
        ok = ok and out.read_bytes()[:1024] == src.read_bytes()[:1024]
    assert comm.bcast(ok)


def test_single_process_drivers_cannot_write_from_several_ranks(tmp_path_factory) -> None:
    path = shared_dir(tmp_path_factory, "core") / "mem.h5"
    if comm.size == 1:
        with h5par.File(path, "w", driver="core", backing_store=True) as f:
            f["x"] = np.arange(3)
        with h5par.File(path, "r", driver="core") as f:
            assert f["x"][...].tolist() == [0, 1, 2]
    else:
        with pytest.raises(h5par.UsageError, match="driver 'core' is single-process"):
            h5par.File(path, "w", driver="core")


def test_scalar_and_null_dataspace_datasets(real_data, tmp_path_factory) -> None:
    src = real_data / "jhdf_test_scalar_empty_datasets_latest.hdf5"
    out = shared_dir(tmp_path_factory, "scalar") / "out.h5"
    result = h5par.apply(
        src, out, [{"name": "scale", "offset": 1}], datasets=["/scalar_[fiu]*", "/empty_*int*"]
    )
    problems = []
    if comm.rank == 0:
        with h5py.File(src) as fin, h5py.File(out) as fout:
            for name in fin:
                x, y = fin[name], fout[name]
                if x.shape is None:  # null dataspace: copied as it is
                    ok = y.shape is None and y.dtype == x.dtype
                elif name.startswith("scalar_") and x.dtype.kind in "iuf":
                    expected = x[...] + 1  # (x * 3 would not fit int8: an error, not a wrap)
                    ok = y[...].tobytes() == expected.tobytes() and y.dtype == expected.dtype
                else:
                    ok = y[()] == x[()]
                if not ok:
                    problems.append(name)
    assert sorted(result.datasets) == sorted(
        f"/scalar_{t}"
        for t in [
            "float_32",
            "float_64",
            "int_16",
            "int_32",
            "int_64",
            "int_8",
            "uint_16",
            "uint_32",
            "uint_64",
            "uint_8",
        ]
    )
    assert comm.bcast(problems) == []
