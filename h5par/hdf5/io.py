"""Opening files (a registry of drivers) and reading/writing hyperslabs.

Reads and writes go through h5py's low-level API so that a rank with nothing to transfer
still takes part in a collective call (h5py skips zero-size selections, h5py#965), a union
of hyperslabs can be written in one call (reshaped blocks), and a block can be read into a
buffer the caller reuses. Transfers are independent except writes of filtered datasets,
which HDF5 requires to be collective (:func:`transfer_plist`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import resource
import shlex
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
from h5py import h5d, h5fd, h5p, h5s, h5t

from h5par.core.decomposition import Index, index_shape
from h5par.core.sizes import format_size
from h5par.errors import H5ParError, UsageError
from h5par.parallel.comm import mpi_comm, resolve_comm, size

if TYPE_CHECKING:
    from h5par.parallel.comm import Comm

__all__ = [
    "DRIVERS",
    "MODES",
    "File",
    "full_storage",
    "hdf5_versions",
    "memory_type",
    "open_dataset",
    "open_error",
    "open_input",
    "read_block",
    "read_selected",
    "write_block",
]

#: File modes, as in h5py (and the book): read, read/write, create/truncate, create/fail, append.
MODES = ("r", "r+", "w", "w-", "x", "a")

_WRITE_MODES = set(MODES) - {"r"}

SERIAL_H5PY_FIX = (
    "h5py was built without MPI, so {n} ranks cannot write one shared file. Fix: build h5py "
    "against parallel HDF5 (`make setup`, or conda's h5py=*=mpi_openmpi_*) and check with "
    "`h5par info`, or run on one rank"
)


def hdf5_versions() -> tuple[str, str, bool, bool]:
    """h5py's and HDF5's versions, whether h5py is built with MPI and filters work under mpio.

    Parallel writes through filters (compression) need HDF5 1.10.2 or later.
    """
    mpi = bool(h5py.get_config().mpi)
    filters = mpi and tuple(h5py.version.hdf5_version_tuple) >= (1, 10, 2)
    return h5py.__version__, h5py.version.hdf5_version, mpi, filters


def open_error(path: str | os.PathLike[str], exc: OSError) -> H5ParError:
    """The one-line error for HDF5 refusing to open ``path`` (h5py's ``OSError`` ``exc``).

    A lock held by another program is a runtime failure (:class:`H5ParError`, exit status 1)
    and the message names the fix; a file that is not HDF5, truncated or corrupt is an
    input error (:class:`UsageError`, exit status 2).

    Parameters
    ----------
    path : str or os.PathLike
        The file HDF5 refused, named in the message.
    exc : OSError
        h5py's exception; its text holds HDF5's reason.

    Returns
    -------
    H5ParError
        The exception to raise (``raise open_error(path, exc) from exc``).

    Examples
    --------
    >>> print(open_error("a.h5", OSError("Unable to open file (file signature not found)")))
    'a.h5' is not an HDF5 file (no HDF5 signature found)
    >>> print(open_error("a.h5", OSError("Unable to open file (truncated file: eof = 96, "
    ...                                  "sblock->base_addr = 0, stored_eof = 2048)")))
    'a.h5' is truncated: 96 bytes on disk, its superblock says 2048 (an interrupted copy or write?)
    >>> type(open_error("a.h5", OSError("(unable to lock file, errno = 11, error message = "
    ...                                 "'Resource temporarily unavailable')"))).__name__
    'H5ParError'
    >>> print(open_error("gone.h5", OSError(2, "Unable to open file (No such file or directory)")))
    'gone.h5': no such file
    """
    name, text = str(path), str(exc)
    if exc.errno == errno.ENOENT:
        return UsageError(f"{name!r}: no such file")
    if "unable to lock file" in text:
        found = re.search(r"errno = (\d+), error message = '([^']*)'", text)
        why = f"errno {found[1]}: {found[2]}" if found else text
        return H5ParError(
            f"cannot open {name!r}: the file is locked (HDF5 file locking failed, {why}): "
            "another program has it open, or the file system does not support locks; wait "
            "for that program to finish, or set HDF5_USE_FILE_LOCKING=FALSE to open it "
            "without a lock (only if nothing writes the file meanwhile)"
        )
    if "file signature not found" in text:
        kind = _netcdf3_kind(Path(path))
        if kind is not None:
            return UsageError(netcdf3_message(name, kind))
        return UsageError(f"{name!r} is not an HDF5 file (no HDF5 signature found)")
    found = re.search(r"truncated file: eof = (\d+),.*stored_eof = (\d+)", text)
    if found:
        return UsageError(
            f"{name!r} is truncated: {found[1]} bytes on disk, its superblock says "
            f"{found[2]} (an interrupted copy or write?)"
        )
    return UsageError(f"cannot open {name!r} as HDF5, the file may be corrupt: {text}")


#: netCDF-3 files begin with b"CDF" and a version byte: their format, by that byte.
_NETCDF3 = {1: "classic", 2: "64-bit offset", 5: "64-bit data, CDF-5"}


def _netcdf3_kind(path: Path) -> str | None:
    """The netCDF-3 format of ``path`` from its first four bytes, or None."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError:
        return None
    return _NETCDF3.get(magic[3]) if len(magic) == 4 and magic[:3] == b"CDF" else None


def netcdf3_message(name: str, kind: str) -> str:
    """What to do with a netCDF-3 file (HDF5 cannot read it; netCDF-4 files are HDF5).

    >>> print(netcdf3_message("run/a.nc", "classic"))
    'run/a.nc' is a netCDF-3 file (classic format), not HDF5: convert it to netCDF-4 with `nccopy -k nc4 run/a.nc run/a_nc4.nc` (netCDF's tools) and process the copy
    """
    out = Path(name).with_name(f"{Path(name).stem}_nc4{Path(name).suffix or '.nc'}")
    command = f"nccopy -k nc4 {shlex.quote(name)} {shlex.quote(str(out))}"
    return (
        f"{name!r} is a netCDF-3 file ({kind} format), not HDF5: convert it to netCDF-4 "
        f"with `{command}` (netCDF's tools) and process the copy"
    )


#: errno values of a write that found its storage full, by what they mean.
_FULL = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large",
}
#: A file system with less free space than this (or than the block) counts as full.
_NEARLY_FULL = 1 << 20


def full_storage(exc: OSError, path: Path, nbytes: int, total: int = 0) -> str | None:
    """Why writing a block of ``nbytes`` into ``path`` failed with ``exc`` for lack of room.

    None when nothing says so. h5py's error carries the errno of a failed POSIX write
    (sec2 driver; HDF5's message says ``errno = 28`` too): ENOSPC, EDQUOT and EFBIG mean a
    full disk, a quota or a file-size limit, any other errno something else. Through
    MPI-IO there is no errno; then the file system's free space (less than the block, or
    1 MiB) and the process's file-size limit (``ulimit -f``: below the file's size plus
    the ``total`` bytes of the dataset written) tell.

    Examples
    --------
    >>> full_storage(OSError(28, "Can't write data"), Path("."), 8)
    'no space left on the device'
    >>> full_storage(OSError("Can't write data (no write intent on file)"), Path("."), 8) is None
    True
    """
    found = re.search(r"errno = (\d+)", str(exc))
    code = exc.errno if exc.errno is not None else int(found[1]) if found else None
    if code is not None:
        return _FULL.get(code)
    try:
        room = os.statvfs(path.parent)
        size = path.stat().st_size if path.exists() else 0
    except OSError:
        return None
    free = room.f_bavail * room.f_frsize
    if free < max(nbytes, _NEARLY_FULL):
        return f"{format_size(free)} free on its file system"
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and size + max(nbytes, total) > limit:
        return f"file-size limit {format_size(limit)} (ulimit -f)"
    return None


def open_input(path: Path, driver: str, options: dict[str, Any]) -> h5py.File:
    """Open an input for reading on this process alone (metadata, rank-0 work).

    HDF5's refusals become one-line errors naming the file (:func:`open_error`).
    """
    chosen = None if driver in ("auto", "sec2", "mpio") else driver
    try:
        return h5py.File(path, "r", driver=chosen, **options)
    except OSError as exc:  # not HDF5, truncated, corrupt (exit 2) or locked (exit 1)
        raise open_error(path, exc) from exc


def _mpio(comm: Comm, options: dict[str, Any]) -> dict[str, Any]:
    if not h5py.get_config().mpi:
        raise H5ParError(SERIAL_H5PY_FIX.format(n=size(comm)))
    return {"driver": "mpio", "comm": mpi_comm(comm), **options}


def _serial(name: str | None) -> Callable[[Comm, dict[str, Any]], dict[str, Any]]:
    def kwargs(comm: Comm, options: dict[str, Any]) -> dict[str, Any]:
        return {"driver": name, **options}

    return kwargs


#: Driver name → function(comm, options) giving ``h5py.File`` keyword arguments.
DRIVERS: dict[str, Callable[[Comm, dict[str, Any]], dict[str, Any]]] = {
    "mpio": _mpio,
    "sec2": _serial(None),
    "core": _serial("core"),
    "family": _serial("family"),
    "stdio": _serial("stdio"),
}
#: Drivers only one process may write through.
SINGLE_PROCESS = frozenset({"sec2", "core", "family", "stdio"})


def resolve_driver(driver: str, mode: str, nranks: int) -> str:
    """The driver to use: ``"auto"`` is mpio on several ranks, sec2 on one.

    Examples
    --------
    >>> resolve_driver("auto", "w", 4), resolve_driver("auto", "r", 1)
    ('mpio', 'sec2')
    >>> resolve_driver("core", "w", 2)
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: driver 'core' is single-process: 2 ranks cannot open a file with it for writing (mode 'w'); valid for writing from several ranks: mpio, auto
    """
    if mode not in MODES:
        raise UsageError(f"mode {mode!r} (valid: {', '.join(MODES)})")
    if driver == "auto":
        return "mpio" if nranks > 1 else "sec2"
    if driver not in DRIVERS:
        raise UsageError(f"driver {driver!r} (valid: auto, {', '.join(DRIVERS)})")
    if driver in SINGLE_PROCESS and nranks > 1 and mode in _WRITE_MODES:
        raise UsageError(
            f"driver {driver!r} is single-process: {nranks} ranks cannot open a file with it for "
            f"writing (mode {mode!r}); valid for writing from several ranks: mpio, auto"
        )
    return driver


class File(h5py.File):  # type: ignore[misc]
    """An ``h5py.File`` opened for ``comm``: mpio on several ranks, sec2 on one.

    Collective over ``comm`` when the resolved driver is mpio (every rank must open and
    close the file, and make the same structural changes in the same order).

    Parameters
    ----------
    path : str or Path
        File name.
    mode : {"r", "r+", "w", "w-", "x", "a"}
        As in h5py.
    comm : mpi4py.MPI.Comm, optional
        Communicator (default ``COMM_WORLD``).
    driver : {"auto", "mpio", "sec2", "core", "family", "stdio"}
        ``"auto"`` picks mpio on several ranks. core and family are single-process drivers:
        several ranks may read through them independently, never write.
    **options
        Driver and file options passed to h5py (``backing_store``, ``memb_size``,
        ``userblock_size``, ``libver``...).

    Examples
    --------
    >>> import tempfile, os
    >>> with File(os.path.join(tempfile.mkdtemp(), "a.h5"), "w") as f:
    ...     f.create_dataset("x", (3,), dtype="f8", fillvalue=42.0)[...].tolist()
    [42.0, 42.0, 42.0]
    """

    def __init__(
        self,
        path: str | Path,
        mode: str = "r",
        comm: Comm | None = None,
        driver: str = "auto",
        **options: Any,
    ) -> None:
        comm = resolve_comm(comm)
        chosen = resolve_driver(driver, mode, size(comm))
        kwargs = DRIVERS[chosen](comm, options)
        try:
            super().__init__(str(path), mode, **kwargs)
        except TypeError as exc:  # an unknown keyword: name it instead of h5py's message
            raise UsageError(f"cannot open {path}: {exc}") from exc
        except OSError as exc:
            if "unable to lock file" in str(exc):  # name the fix (HDF5_USE_FILE_LOCKING)
                raise open_error(path, exc) from exc
            raise
        self.comm = comm


def transfer_plist(dset: h5py.Dataset) -> h5p.PropDXID | None:
    """The transfer property list for writing ``dset``: collective for filtered datasets.

    HDF5 requires collective writes of filtered datasets under mpio; every other transfer
    gets None, the default: independent MPI-IO. Reads are always independent (None): each
    rank moves one contiguous hyperslab per step, so on one node collective buffering only
    adds the aggregators' copies (measured slower), and HDF5 1.10's collective filtered
    read path hands some filters (h5py's LZF) data they cannot decompress.
    """
    if dset.file.driver != "mpio" or dset.id.get_create_plist().get_nfilters() == 0:
        return None
    dxpl = h5p.create(h5p.DATASET_XFER)
    dxpl.set_dxpl_mpio(h5fd.MPIO_COLLECTIVE)
    return dxpl


def open_dataset(group: h5py.Group, path: str, cache: tuple[int, int] | None) -> h5py.Dataset:
    """Dataset ``path`` of ``group``, with a chunk cache of ``cache = (bytes, slots)``.

    None keeps HDF5's default (1 MiB). HDF5 sizes the cache when a dataset is first
    opened: a handle already open elsewhere in the file keeps its cache.
    """
    if cache is None:  # HDF5's open without h5py's name lookup (a third of its cost)
        return h5py.Dataset(h5d.open(group.id, path.encode()))
    nbytes, nslots = cache
    dapl = h5p.create(h5p.DATASET_ACCESS)
    dapl.set_chunk_cache(nslots, nbytes, dapl.get_chunk_cache()[2])  # HDF5's preemption weight
    return h5py.Dataset(h5d.open(group.id, path.encode(), dapl=dapl))


def memory_type(dset: h5py.Dataset) -> h5t.TypeID | None:
    """The HDF5 type blocks of ``dset`` are transferred in: its own type, or None (h5py's).

    h5py would describe a block by ``py_create(dtype)``, which is a plain integer for an
    enum or a bitfield, has no tag for an opaque type, and may pad strings differently:
    HDF5 then converts every element, and a conversion turns a collective write of a
    filtered dataset into an independent one, which HDF5 refuses. When numpy's dtype holds
    exactly the bytes of the dataset's type (:func:`same_bytes`), the dataset's own type is
    the memory type and nothing is converted; otherwise (references, variable-length data,
    integers of unusual precision) h5py's type lets HDF5 convert.

    Examples
    --------
    >>> import tempfile, os
    >>> with File(os.path.join(tempfile.mkdtemp(), "a.h5"), "w") as f:
    ...     e = f.create_dataset("e", (2,), dtype=h5py.enum_dtype({"A": 0, "B": 1}, "u1"))
    ...     memory_type(e).get_class() == h5t.ENUM
    True
    """
    ftype = dset.id.get_type()
    return ftype if same_bytes(ftype, dset.dtype) else None


def same_bytes(ftype: h5t.TypeID, dtype: np.dtype[Any]) -> bool:
    """True when elements of HDF5 type ``ftype`` are stored exactly as numpy's ``dtype`` bytes."""
    cls, size = ftype.get_class(), ftype.get_size()
    if size != dtype.itemsize:
        return False
    if cls in (h5t.INTEGER, h5t.FLOAT):
        return bool(ftype.equal(_numeric_type(dtype.str)))
    if cls == h5t.ENUM:  # numpy's bool is h5py's enum (FALSE = 0, TRUE = 1) of int8
        return dtype.kind == "b" or same_bytes(ftype.get_super(), dtype)
    if cls == h5t.BITFIELD:
        order = h5t.ORDER_BE if dtype.byteorder == ">" else h5t.ORDER_LE
        return dtype.kind == "u" and (size == 1 or ftype.get_order() == order)
    if cls == h5t.OPAQUE:
        return dtype.kind == "V" and dtype.fields is None and dtype.subdtype is None
    if cls == h5t.STRING:
        return dtype.kind == "S" and not ftype.is_variable_str()
    if cls == h5t.ARRAY:
        sub = dtype.subdtype
        return (
            sub is not None
            and ftype.get_array_dims() == sub[1]
            and same_bytes(ftype.get_super(), sub[0])
        )
    if cls == h5t.COMPOUND:
        return _same_fields(ftype, dtype)
    return False  # references, variable-length, time: h5py's memory form differs


@functools.lru_cache(maxsize=256)
def _numeric_type(code: str) -> h5t.TypeID:
    """h5py's HDF5 type of the numeric numpy type ``code`` (``<f8``), made once."""
    return h5t.py_create(np.dtype(code))


def _same_fields(ftype: Any, dtype: np.dtype[Any]) -> bool:
    """Compound ``ftype`` and structured ``dtype``: the same members at the same offsets."""
    names = dtype.names or ()
    if ftype.get_nmembers() != len(names):
        return False
    for i, name in enumerate(names):
        field, offset = dtype.fields[name][:2]  # type: ignore[index]
        same_name = ftype.get_member_name(i) == name.encode()
        if not same_name or ftype.get_member_offset(i) != offset:
            return False
        if not same_bytes(ftype.get_member_type(i), field):
            return False
    return True


def _file_space(dset: h5py.Dataset, boxes: Sequence[Index]) -> h5s.SpaceID:
    space = dset.id.get_space()
    if not boxes:
        space.select_none()
    elif dset.shape == ():
        space.select_all()
    else:
        for i, box in enumerate(boxes):
            start = tuple(s.start for s in box)
            op = h5s.SELECT_SET if i == 0 else h5s.SELECT_OR
            space.select_hyperslab(start, index_shape(box), op=op)
    return space


def _memory_space(shape: tuple[int, ...], empty: bool) -> h5s.SpaceID:
    if empty:
        space = h5s.create_simple((1,))
        space.select_none()
        return space
    return h5s.create(h5s.SCALAR) if shape == () else h5s.create_simple(shape)


def _destination(
    dset: h5py.Dataset, shape: tuple[int, ...], empty: bool, out: np.ndarray | None
) -> np.ndarray:
    """The array a read fills: ``out`` (checked), a new one, or a dummy for empty reads."""
    if empty:
        return np.zeros(1, dset.dtype)
    if out is None:
        return np.empty(shape, dset.dtype)
    if out.shape != shape or out.dtype != dset.dtype or not out.flags.c_contiguous:
        raise ValueError(
            f"read buffer of shape {out.shape} and dtype {out.dtype} (C-contiguous: "
            f"{out.flags.c_contiguous}) for a block of shape {shape} and dtype {dset.dtype}"
        )
    return out


@contextlib.contextmanager
def _naming_read(dset: h5py.Dataset) -> Iterator[None]:
    """Name the file and dataset when HDF5 refuses a read (a corrupt chunk, a filter).

    One line, :class:`H5ParError` (exit status 1); HDF5's error stays its cause.
    """
    try:
        yield
    except OSError as exc:
        name = str(dset.file.filename)
        raise H5ParError(f"cannot read dataset {dset.name} of {name!r}: {exc}") from exc


def read_block(
    dset: h5py.Dataset,
    index: Index | None,
    dxpl: h5p.PropDXID | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Read ``dset[index]`` in the file's dtype; ``index=None`` reads nothing.

    With ``out`` (C-contiguous, the block's shape and the file's dtype, else a ValueError)
    the block is read into it and ``out`` is returned; an empty read ignores it.
    Collective when ``dxpl`` is collective: every rank calls it, ranks with no data pass None.
    """
    shape = (0,) if index is None else index_shape(index)
    empty = index is None or 0 in shape
    into = _destination(dset, shape, empty, out)
    boxes = [] if index is None or empty else [index]
    mspace, fspace = _memory_space(shape, empty), _file_space(dset, boxes)
    with _naming_read(dset):
        dset.id.read(mspace, fspace, into, memory_type(dset), dxpl=dxpl)
    return np.empty(shape, dset.dtype) if empty else into


def write_block(
    dset: h5py.Dataset,
    boxes: Sequence[Index],
    data: np.ndarray,
    dxpl: h5p.PropDXID | None = None,
) -> None:
    """Write ``data`` (C order) into the union of ``boxes``; no boxes writes nothing.

    ``data`` must already have the dataset's dtype: a memory/file type mismatch would turn
    collective I/O into independent I/O; for the same reason the memory type is the
    dataset's own when numpy's bytes are its bytes (:func:`memory_type`: enums, bitfields,
    opaque data). Collective when ``dxpl`` is collective.
    """
    if data.dtype != dset.dtype:
        raise TypeError(f"block dtype {data.dtype} differs from dataset dtype {dset.dtype}")
    empty = not boxes or data.size == 0
    buffer = np.zeros(1, dset.dtype) if empty else np.ascontiguousarray(data)
    dset.id.write(
        _memory_space(data.shape, empty),
        _file_space(dset, [] if empty else boxes),
        buffer,
        memory_type(dset),
        dxpl=dxpl,
    )


def read_selected(
    dset: h5py.Dataset,
    slabs: Sequence[tuple[tuple[int, ...], ...]],
    shape: tuple[int, ...],
    dxpl: h5p.PropDXID | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Read the union of strided hyperslabs ``slabs`` as an array of ``shape`` (C order).

    Each slab is ``(start, count, stride)`` per dataset axis (see
    :meth:`h5par.core.slicing.Selection.source`); no slabs reads nothing. ``out`` is as for
    :func:`read_block`. Collective when ``dxpl`` is collective: every rank calls it.
    """
    empty = not slabs or 0 in shape
    into = _destination(dset, shape, empty, out)
    space = dset.id.get_space()
    if empty:
        space.select_none()
    elif dset.shape == ():
        space.select_all()
    else:
        for i, (start, count, stride) in enumerate(slabs):
            op = h5s.SELECT_SET if i == 0 else h5s.SELECT_OR
            space.select_hyperslab(start, count, stride, op=op)
    with _naming_read(dset):
        dset.id.read(_memory_space(shape, empty), space, into, memory_type(dset), dxpl=dxpl)
    return np.empty(shape, dset.dtype) if empty else into
