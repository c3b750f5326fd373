"""Storage layout of output datasets: chunks, filters and fill value (pure, no h5py).

By default an output dataset keeps its input's chunks, filters and fill value; the job's
``[output]`` options change them. Every output element is written, so datasets are created
with ``fill_time = "never"`` (writing fill values first would double the bytes, HDF5#2037),
except extendible ones: elements appended after a resize must read as the fill value.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from h5par.core.values import representable
from h5par.errors import UsageError

__all__ = [
    "CHUNKED_KEYS",
    "OutputOptions",
    "SourceLayout",
    "auto_chunks",
    "dataset_options",
    "row_chunks",
]

COMPRESSIONS = ("keep", "gzip", "lzf", "none")
LAYOUTS = ("single", "subfiled")
UNSELECTED = ("copy", "drop")
AUTO_CHUNK_BYTES = 1 << 20
#: ``create_dataset`` keywords that need a chunked layout.
CHUNKED_KEYS = frozenset(
    (
        "chunks",
        "maxshape",
        "compression",
        "compression_opts",
        "shuffle",
        "fletcher32",
        "scaleoffset",
    )
)


@dataclasses.dataclass(frozen=True)
class SourceLayout:
    """What an input dataset's creation properties say (as h5py reports them)."""

    chunks: tuple[int, ...] | None = None
    maxshape: tuple[int | None, ...] | None = None
    compression: str | None = None
    compression_opts: Any = None
    shuffle: bool = False
    fletcher32: bool = False
    scaleoffset: int | None = None
    fillvalue: Any = None  # only when user-defined


@dataclasses.dataclass(frozen=True)
class OutputOptions:
    """Layout options for output datasets (``"keep"``/None keep the input's).

    Parameters
    ----------
    chunks : "keep", "auto" or list of int
        Chunk shape. ``"auto"`` aims at about 1 MiB per chunk.
    compression : {"keep", "gzip", "lzf", "none"}
        Filter for the data. ``compression_level`` applies to gzip (0-9, default 4).
    shuffle, fletcher32 : bool or None
        Byte-shuffle and checksum filters; None keeps the input's.
    fillvalue : number or None
        HDF5 fill value of the output dataset; None keeps the input's (converted).
    layout : {"single", "subfiled"}
        ``"single"``: one output file written by every rank. ``"subfiled"``: each rank writes
        its own part file (``OUT.parts/part-00000.h5``...) and the output file presents
        every processed dataset as a virtual dataset over the parts (see
        :mod:`h5par.hdf5.subfiles`).
    unselected : {"copy", "drop"}
        What becomes of what the job does not select: ``"copy"`` keeps every other dataset,
        group, link and attribute unchanged; ``"drop"`` writes only the selected datasets,
        the dimension scales they use (selected with them) and the groups and attributes on
        their paths (as ``ncks -v``).
    """

    chunks: str | tuple[int, ...] | list[int] = "keep"
    compression: str = "keep"
    compression_level: int | None = None
    shuffle: bool | None = None
    fletcher32: bool | None = None
    fillvalue: float | None = None
    layout: str = "single"
    unselected: str = "copy"

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise UsageError(f"output.layout = {self.layout!r} (valid: {', '.join(LAYOUTS)})")
        if self.unselected not in UNSELECTED:
            raise UsageError(
                f"output.unselected = {self.unselected!r} (valid: {', '.join(UNSELECTED)})"
            )
        if self.compression not in COMPRESSIONS:
            raise UsageError(
                f"output compression = {self.compression!r} (valid: {', '.join(COMPRESSIONS)})"
            )
        level = self.compression_level
        if level is not None and (
            isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9
        ):
            raise UsageError(f"output compression_level = {level!r} (valid: 0..9, gzip only)")
        if level is not None and self.compression != "gzip":
            raise UsageError("output compression_level only applies to compression = 'gzip'")
        if isinstance(self.chunks, str) and self.chunks not in ("keep", "auto"):
            raise UsageError(f"output chunks = {self.chunks!r} (valid: 'keep', 'auto', [n, ...])")
        if not isinstance(self.chunks, str) and not all(
            isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in self.chunks
        ):
            raise UsageError(f"output chunks = {self.chunks!r} (valid: positive integers)")
        for key in ("shuffle", "fletcher32"):
            if getattr(self, key) not in (None, True, False):
                raise UsageError(f"output {key} = {getattr(self, key)!r} (valid: true, false)")

    @property
    def changes_layout(self) -> bool:
        """True if any dataset option differs from keeping the input's layout."""
        return dataclasses.replace(self, layout="single", unselected="copy") != OutputOptions()

    @property
    def drop(self) -> bool:
        """True when the output leaves out what the job does not select."""
        return self.unselected == "drop"

    @property
    def subfiled(self) -> bool:
        """True for per-rank part files behind virtual datasets."""
        return self.layout == "subfiled"


def auto_chunks(
    shape: tuple[int, ...], itemsize: int, target: int = AUTO_CHUNK_BYTES
) -> tuple[int, ...]:
    """A chunk shape of at most ``target`` bytes: halve the longest axis until it fits.

    Examples
    --------
    >>> auto_chunks((100, 480, 640), 8)
    (50, 60, 40)
    >>> auto_chunks((10,), 4)
    (10,)

    An empty axis (one that may grow) counts as 1024 long, as in h5py's own guess:

    >>> auto_chunks((0, 3), 8)
    (1024, 3)
    """
    chunk = [n or 1024 for n in shape]
    while math.prod(chunk) * itemsize > target and max(chunk) > 1:
        axis = chunk.index(max(chunk))
        chunk[axis] = -(-chunk[axis] // 2)
    return tuple(chunk)


def row_chunks(
    shape: tuple[int, ...], itemsize: int, target: int = AUTO_CHUNK_BYTES
) -> tuple[int, ...]:
    """A chunk shape of at most ``target`` bytes that keeps the last axes whole if it can.

    Axes are halved from the first on, so a chunk is a run of whole C-order rows: a block
    of whole rows is written chunk by chunk straight from its buffer (the chunks of
    :func:`auto_chunks` split rows and make HDF5 gather every chunk). For the part files of
    subfiled output, which are written in blocks of the leading axes.

    Examples
    --------
    >>> row_chunks((262144, 1024), 8)
    (128, 1024)
    >>> row_chunks((100, 480, 640), 8)
    (1, 120, 640)
    >>> row_chunks((10,), 4)
    (10,)
    """
    chunk = [max(1, n) for n in shape]
    for axis in range(len(chunk)):
        while math.prod(chunk) * itemsize > target and chunk[axis] > 1:
            chunk[axis] = -(-chunk[axis] // 2)
    return tuple(chunk)


def dataset_options(
    source: SourceLayout,
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    out_dtype: np.dtype[Any],
    options: OutputOptions,
    dtype_changed: bool,
) -> dict[str, Any]:
    """Keyword arguments for ``h5py.Group.create_dataset`` of one output dataset.

    Examples
    --------
    >>> dataset_options(SourceLayout(chunks=(10, 10), compression="gzip", compression_opts=4),
    ...                 (100, 100), (100, 100), np.dtype("f4"), OutputOptions(shuffle=True), True)
    {'shape': (100, 100), 'dtype': dtype('float32'), 'fill_time': 'never', 'chunks': (10, 10), 'compression': 'gzip', 'compression_opts': 4, 'shuffle': True}
    """
    kwargs: dict[str, Any] = {"shape": out_shape, "dtype": out_dtype, "fill_time": "never"}
    same_shape = in_shape == out_shape
    compression, opts = _compression(source, options)
    shuffle = source.shuffle if options.shuffle is None else options.shuffle
    fletcher32 = source.fletcher32 if options.fletcher32 is None else options.fletcher32
    filtered = compression is not None or shuffle or fletcher32
    chunks = _chunks(source, out_shape, out_dtype.itemsize, options, same_shape, filtered)
    maxshape = source.maxshape if same_shape and source.maxshape is not None else out_shape
    if chunks is not None and _chunkable(out_shape, maxshape):
        kwargs["chunks"] = chunks
        if tuple(maxshape) != tuple(out_shape):
            kwargs["maxshape"] = maxshape
            del kwargs["fill_time"]  # what is appended later must read as the fill value
        if compression is not None:
            kwargs["compression"], kwargs["compression_opts"] = compression, opts
        if shuffle:
            kwargs["shuffle"] = True
        if fletcher32:
            kwargs["fletcher32"] = True
        # Scale-offset is lossless on integers only; on floats it would quantise the results.
        lossless = out_dtype.kind in "iu" and not dtype_changed
        if source.scaleoffset is not None and lossless and options.compression == "keep":
            kwargs["scaleoffset"] = source.scaleoffset
    fill = source.fillvalue if options.fillvalue is None else options.fillvalue
    if fill is not None:
        converted = _convert_fill(fill, out_dtype, chosen=options.fillvalue is not None)
        if converted is not None:
            kwargs["fillvalue"] = converted
    return kwargs


def _chunkable(shape: tuple[int, ...], maxshape: tuple[int | None, ...]) -> bool:
    """True when HDF5 can chunk a dataset: not scalar, no axis fixed at length 0.

    An empty axis that may grow (``maxshape`` None) keeps its chunks and filters, so an
    appendable dataset stays appendable.

    Examples
    --------
    >>> _chunkable((0, 3), (None, 3)), _chunkable((0, 3), (0, 3)), _chunkable((), ())
    (True, False, False)
    """
    return shape != () and all(m is None or m > 0 for m in maxshape)


def _compression(source: SourceLayout, options: OutputOptions) -> tuple[str | None, Any]:
    if options.compression == "keep":
        return source.compression, source.compression_opts
    if options.compression == "none":
        return None, None
    if options.compression == "gzip":
        return "gzip", 4 if options.compression_level is None else options.compression_level
    return options.compression, None


def _chunks(
    source: SourceLayout,
    shape: tuple[int, ...],
    itemsize: int,
    options: OutputOptions,
    same_shape: bool,
    filtered: bool,
) -> tuple[int, ...] | None:
    if options.chunks == "auto" or (
        options.chunks == "keep" and filtered and not (same_shape and source.chunks)
    ):
        return auto_chunks(shape, itemsize)
    if options.chunks == "keep":
        return source.chunks if same_shape else None
    chunks = tuple(int(c) for c in options.chunks)
    if len(chunks) != len(shape):
        raise UsageError(
            f"output chunks = {list(chunks)} has {len(chunks)} entries for a {len(shape)}-d dataset"
        )
    return tuple(c if n == 0 else min(c, n) for c, n in zip(chunks, shape, strict=True))


def _convert_fill(value: Any, dtype: np.dtype[Any], chosen: bool = False) -> Any:
    """The fill value in ``dtype``; None when the input's does not survive the conversion.

    A fill value the job ``chosen`` that ``dtype`` cannot hold is a :class:`UsageError`:

    >>> _convert_fill(-9999.0, np.dtype("u1"), chosen=True)
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: output fillvalue = -9999.0 cannot be represented in uint8 (valid: whole numbers 0..255)
    >>> _convert_fill(-9999.0, np.dtype("u1")) is None, _convert_fill(0.1, np.dtype("f4"))
    (True, np.float32(0.1))
    """
    valid = _fill_problem(value, dtype)
    if valid is None:
        if dtype.kind not in "biufc" or dtype.fields is not None:
            return value
        with np.errstate(all="ignore"):
            return np.asarray(value).astype(dtype)[()]
    if chosen:
        raise UsageError(
            f"output fillvalue = {value!r} cannot be represented in {dtype} (valid: {valid})"
        )
    return None


def _fill_problem(value: Any, dtype: np.dtype[Any]) -> str | None:
    """None when ``value`` can be a fill value of ``dtype``, else what can."""
    given = np.asarray(value)
    if dtype.kind not in "biufc" or dtype.fields is not None:
        return None if given.dtype == dtype else f"values of {dtype} itself"
    if isinstance(value, bool) or given.ndim or given.dtype.kind not in "biufc":
        return "a number"
    if given.dtype.kind == "c" and dtype.kind != "c":
        return "a real number"
    return representable(given[()], dtype)
