"""HDF5 types through a parallel run (1-4 ranks): enums, bitfields, opaque, big-endian.

Issue 16, items 4, 8, 10 and 11: a filtered enum dataset is written collectively by every
rank (its memory type is its own file type, so HDF5 converts nothing), a bitfield stays a
bitfield, big-endian data goes through the python kernel (with a halo too) and in place,
and values or fill values a dtype cannot hold stop the run before anything is written.
Every result is compared with plain numpy on the whole array.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from h5py import h5s, h5t
from mpi4py import MPI

import h5par

pytestmark = pytest.mark.mpi(min_size=1)
comm = MPI.COMM_WORLD

COLOURS = {"RED": 0, "GREEN": 1, "BLUE": 2}
ENUM_DATA = (np.arange(4096) % 3).astype(np.int16)


def shared_dir(tmp_path_factory, name: str) -> Path:
    return Path(comm.bcast(str(tmp_path_factory.mktemp(name)) if comm.rank == 0 else None))


def on_rank0(check) -> None:
    """Run ``check()`` on rank 0; every rank fails with its message if it fails."""
    problem = None
    if comm.rank == 0:
        try:
            check()
        except Exception as exc:  # reach the bcast below on every rank
            problem = f"{type(exc).__name__}: {exc}"
    assert comm.bcast(problem) is None


def raw(dset: h5py.Dataset) -> bytes:
    """The stored bytes of ``dset``, read in its own type (no conversion)."""
    out = np.empty(dset.shape, dset.dtype)
    dset.id.read(h5s.ALL, h5s.ALL, out, dset.id.get_type())
    return out.tobytes()


def write_enum_input(path: Path) -> None:
    if comm.rank == 0:
        with h5py.File(path, "w") as f:
            dtype = h5py.enum_dtype(COLOURS, basetype="i2")
            f.create_dataset("e", data=ENUM_DATA, dtype=dtype, chunks=(256,), compression="gzip")
    comm.Barrier()


def check_enum(path: Path, expected: np.ndarray) -> None:
    with h5py.File(path) as f:
        dset = f["e"]
        assert dset.id.get_type().get_class() == h5t.ENUM
        assert h5py.check_enum_dtype(dset.dtype) == COLOURS
        assert dset.compression == "gzip" and dset.chunks == (256,)
        assert dset[...].tobytes() == expected.tobytes()


def test_filtered_enum_dataset_is_written_collectively_by_every_rank(tmp_path_factory) -> None:
    folder = shared_dir(tmp_path_factory, "enum")
    write_enum_input(folder / "in.h5")
    kernels = [{"name": "where", "condition": "x == 2", "value": "0"}]
    result = h5par.apply(folder / "in.h5", folder / "out.h5", kernels, memory="2KiB")
    shares = result.decomposition["/e"]
    assert all(share["steps"] > 0 for share in shares), shares  # 16 units: every rank wrote
    on_rank0(lambda: check_enum(folder / "out.h5", np.where(ENUM_DATA == 2, 0, ENUM_DATA)))


def test_filtered_enum_dataset_is_updated_in_place_by_every_rank(tmp_path_factory) -> None:
    folder = shared_dir(tmp_path_factory, "enum_in_place")
    write_enum_input(folder / "in.h5")
    kernels = [{"name": "where", "condition": "x == 0", "value": "1"}]
    h5par.apply(folder / "in.h5", None, kernels, in_place=True, memory="2KiB")
    on_rank0(lambda: check_enum(folder / "in.h5", np.where(ENUM_DATA == 0, 1, ENUM_DATA)))


def test_real_enum_file_recompressed_with_gzip(real_data, tmp_path_factory) -> None:
    source = real_data / "hdf5-tools_tenum.h5"
    out = shared_dir(tmp_path_factory, "tenum") / "out.h5"
    h5par.apply(source, out, options=h5par.OutputOptions(compression="gzip"))

    def check() -> None:
        with h5py.File(source) as f, h5py.File(out) as g:
            assert g["table"].id.get_type().get_class() == h5t.ENUM
            assert g["table"].id.get_type().equal(f["table"].id.get_type())
            assert g["table"].compression == "gzip"
            assert raw(g["table"]) == raw(f["table"])

    on_rank0(check)


@pytest.mark.parametrize("layout", ["single", "subfiled"])
def test_bitfield_opaque_and_compound_types_are_kept(real_data, tmp_path_factory, layout) -> None:
    source = real_data / "hdf5-tools_tbitnopaque.h5"
    out = shared_dir(tmp_path_factory, "bitfield") / "out.h5"
    options = h5par.OutputOptions(compression="gzip", layout=layout)
    result = h5par.apply(source, out, options=options, memory="1KiB")
    assert len(result.datasets) == 7

    def check() -> None:
        with h5py.File(source) as f, h5py.File(out) as g:
            for path in result.datasets:
                kept, original = g[path].id.get_type(), f[path].id.get_type()
                assert kept.get_class() == original.get_class(), path
                assert kept.equal(original), path  # bitfield order, opaque tag, members
                assert raw(g[path]) == raw(f[path]), path
            assert g["/bittypetests/bitfield_2"].id.get_type().get_class() == h5t.BITFIELD
            tag = g["/opaquetypetests/opaque_2"].id.get_type().get_tag()
            assert tag == b"2-byte opaque type"

    on_rank0(check)


def test_compounds_of_strings_recompressed_with_gzip(real_data, tmp_path_factory) -> None:
    source = real_data / "hdf5-tools_tsaf.h5"  # SAF: big-endian compounds holding strings
    out = shared_dir(tmp_path_factory, "saf") / "out.h5"
    result = h5par.apply(source, out, options=h5par.OutputOptions(compression="gzip"))

    def check() -> None:
        with h5py.File(source) as f, h5py.File(out) as g:
            for path in result.datasets:
                assert g[path].id.get_type().equal(f[path].id.get_type()), path
                assert raw(g[path]) == raw(f[path]), path

    on_rank0(check)


def big_endian_input(path: Path) -> np.ndarray:
    x = np.random.default_rng(16).normal(size=(64, 33)).astype(">f8")
    if comm.rank == 0:
        with h5py.File(path, "w") as f:
            f.create_dataset("x", data=x, chunks=(8, 33))
    comm.Barrier()
    return x


@pytest.mark.parametrize(
    ("kernel", "reference"),
    [
        ({"name": "python", "function": "numpy:negative"}, np.negative),
        ({"name": "python", "function": "scipy.ndimage:laplace", "halo": 1}, "laplace"),
    ],
)
def test_python_kernel_on_big_endian_input_equals_numpy(
    tmp_path_factory, kernel, reference
) -> None:
    from scipy import ndimage

    folder = shared_dir(tmp_path_factory, "big_endian")
    x = big_endian_input(folder / "in.h5")
    h5par.apply(folder / "in.h5", folder / "out.h5", [kernel], memory="8KiB")
    function = ndimage.laplace if reference == "laplace" else reference
    expected = function(x).astype("=f8")

    def check() -> None:
        with h5py.File(folder / "out.h5") as f:
            assert f["x"].dtype == np.dtype("=f8")
            assert f["x"][...].tobytes() == expected.tobytes()

    on_rank0(check)


def test_big_endian_dataset_in_place_keeps_its_byte_order(tmp_path_factory) -> None:
    folder = shared_dir(tmp_path_factory, "big_endian_in_place")
    x = big_endian_input(folder / "in.h5")
    h5par.apply(folder / "in.h5", None, [{"name": "scale", "factor": -2.0}], in_place=True)

    def check() -> None:
        with h5py.File(folder / "in.h5") as f:
            assert f["x"].dtype == np.dtype(">f8")
            assert f["x"][...].tobytes() == (x * -2.0).astype(">f8").tobytes()

    on_rank0(check)


def int_input(path: Path) -> None:
    if comm.rank == 0:
        with h5py.File(path, "w") as f:
            f.create_dataset("i", data=np.arange(-40, 40, dtype=np.int32), chunks=(8,))
            f.create_dataset("u", data=np.arange(80, dtype=np.uint8), chunks=(8,))
    comm.Barrier()


def test_where_nan_into_integers_is_refused_before_anything_is_written(tmp_path_factory) -> None:
    folder = shared_dir(tmp_path_factory, "where_nan")
    int_input(folder / "in.h5")
    kernels = [{"name": "where", "condition": "x < 0", "value": "nan"}]
    with pytest.raises(h5par.UsageError, match="value = nan cannot be represented in int32"):
        h5par.apply(folder / "in.h5", folder / "out.h5", kernels, datasets=["/i"])
    comm.Barrier()
    assert sorted(p.name for p in folder.iterdir()) == ["in.h5"]


def test_where_value_from_the_data_that_does_not_fit_fails_on_every_rank(tmp_path_factory) -> None:
    folder = shared_dir(tmp_path_factory, "where_inf")
    int_input(folder / "in.h5")
    kernels = [{"name": "where", "condition": "x == 0", "value": "1 / x"}]
    with np.errstate(divide="ignore"), pytest.raises(h5par.H5ParError, match="where: value inf"):
        h5par.apply(folder / "in.h5", folder / "out.h5", kernels, datasets=["/i"], memory="1KiB")
    comm.Barrier()
    assert not (folder / "out.h5").exists()


@pytest.mark.parametrize(("fill", "dataset"), [(-9999.0, "/u"), (2.5, "/i")])
def test_output_fillvalue_the_dtype_cannot_hold_is_a_usage_error(
    tmp_path_factory, fill, dataset
) -> None:
    folder = shared_dir(tmp_path_factory, "fill")
    int_input(folder / "in.h5")
    options = h5par.OutputOptions(fillvalue=fill)
    with pytest.raises(h5par.UsageError, match=f"output fillvalue = {fill} cannot be represented"):
        h5par.apply(
            folder / "in.h5", folder / "o.h5", [{"name": "abs"}], [dataset], options=options
        )
    comm.Barrier()
    assert not (folder / "o.h5").exists()
    if comm.rank == 0:
        shutil.rmtree(folder)
