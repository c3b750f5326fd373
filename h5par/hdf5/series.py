"""A series of files as one: datasets checked across files, joined by virtual datasets.

Rank 0 alone, metadata only.

The joined file holds the first file's hierarchy (what is not joined is copied from it,
as NCO does) with each joined dataset a virtual dataset over that dataset of every file,
in order. h5par processes it as any input: HDF5 reads, for each box of a joined array,
the part of each file that box covers. The file is written under a temporary name and
renamed; source files are named relative to it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from h5py import h5o

from h5par.core.globs import select_paths
from h5par.core.series import Joined, ordered
from h5par.errors import UsageError
from h5par.hdf5.dimensions import COORDINATES, DIMID, attached, netcdf_coordinates
from h5par.hdf5.hierarchy import (
    build_output,
    dataset_attributes,
    is_scale,
    source_layout,
    source_name,
    vds_name,
)
from h5par.hdf5.io import open_input

__all__ = ["MEMBER", "Survey", "feeding_files", "survey", "write_joined"]

#: The dimension scale of the new axis of a stacked series.
MEMBER = "/member"


@dataclasses.dataclass(frozen=True)
class Survey:
    """What the files of a series hold, checked: what :func:`write_joined` joins.

    Attributes
    ----------
    files : tuple of Path
        The files in the series' order.
    joined : dict
        ``{dataset path: Joined}`` of every dataset joined (data and scales along the axis).
    member : list or None
        Stack: the values of the new axis' scale (file index, or ``order_by`` values).
    """

    files: tuple[Path, ...]
    joined: dict[str, Joined]
    member: list[Any] | None = None


def survey(
    files: Sequence[Path],
    combine: str,
    axis: int,
    patterns: list[str] | None,
    order_by: str | None,
) -> Survey:
    """Check ``files`` against each other and decide what is joined (rank 0).

    Raises
    ------
    UsageError
        A file lacks a joined dataset, shapes or dtypes differ (both files named), the
        ``order_by`` dataset is missing or its values do not increase.
    """
    firsts = None
    if order_by is not None:
        firsts = [_first_value(f, order_by) for f in files]
        files = [files[i] for i in ordered([str(f) for f in files], firsts, order_by)]
        firsts = sorted(firsts)
    with _opened(files[0]) as first:
        paths = _joined_paths(first, combine, axis, patterns)  # {path: the axis it joins}
        reference = {p: (first[p].shape, first[p].dtype) for p in paths}
    shapes: dict[str, list[tuple[int, ...]]] = {p: [] for p in paths}
    increasing = _Increasing(order_by) if combine == "concat" and order_by in paths else None
    for path in files:
        with _opened(path) as f:
            for p, (shape, dtype) in reference.items():
                names = (files[0], path)
                shapes[p].append(_checked(f, p, (shape, dtype), names, combine, paths[p]))
            if increasing is not None:
                increasing.check(f, path)
    joined = {p: Joined(combine, paths[p], tuple(s)) for p, s in shapes.items()}
    member = None if combine == "concat" else (firsts or list(range(len(files))))
    return Survey(tuple(files), joined, member)


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[h5py.File]:
    with open_input(path, "auto", {}) as f:  # its errors name the file
        yield f


def _first_value(path: Path, order_by: str) -> Any:
    """The first value of ``order_by`` in ``path`` (a number), else a job error."""
    with _opened(path) as f:
        dset = f.get(order_by)
        if not isinstance(dset, h5py.Dataset) or dset.dtype.kind not in "iuf" or not dset.size:
            raise UsageError(
                f"input.order_by = {order_by!r}: {str(path)!r} has no such dataset of numbers "
                "(valid: a numeric dataset every file holds, e.g. its time)"
            )
        value = np.asarray(dset[(0,) * len(dset.shape)]).item()
    if not np.isfinite(value):
        raise UsageError(
            f"input.order_by = {order_by!r}: {str(path)!r} starts at {value!r} (valid: a "
            "finite first value in every file)"
        )
    return value


def _joined_paths(
    first: h5py.File, combine: str, axis: int, patterns: list[str] | None
) -> dict[str, int]:
    """The datasets a series joins, each with the axis it is joined along.

    The patterns' datasets, else the data (not dimension scales) that has the axis and may
    grow along it (netCDF's record variables), else the data with that axis when it all
    uses one dimension there. Concat also joins the 1-d scales attached along the axis
    (``time``), along their own axis 0.
    """
    listing = dataset_attributes(first)
    if patterns is not None:
        data = select_paths(list(listing), patterns)
    else:
        data = [p for p, n in listing.items() if not (n and is_scale(first, p))]
        data = _record_data(first, data, axis if combine == "concat" else None)
    if not data:
        raise UsageError(
            f"input.combine = {combine!r}: {first.filename!r} has no dataset to join along "
            f"axis {axis} (valid: datasets with at least {axis + 1} axes)"
        )
    if combine == "stack":
        return dict.fromkeys(data, 0)
    for p in data:
        if len(first[p].shape or ()) <= axis:
            raise UsageError(
                f"input.combine = 'concat': dataset {p} has shape {first[p].shape}, no axis "
                f"{axis} to join along (valid: leave it out of input.datasets)"
            )
    scales = [s for p in data for s in attached(first[p])[axis] if len(first[s].shape) == 1]
    return {**dict.fromkeys(data, axis), **dict.fromkeys(scales, 0)}


def _record_data(first: h5py.File, data: list[str], axis: int | None) -> list[str]:
    """The data a series joins by default (``axis`` None: stack, every dataset)."""
    if axis is None:
        return data
    data = [p for p in data if len(first[p].shape or ()) > axis]
    record = [p for p in data if first[p].maxshape[axis] is None]
    if record:
        return record
    dims: dict[str, list[str]] = {}
    for p in data:
        scales = attached(first[p])[axis]
        dims.setdefault(scales[0] if scales else "(none)", []).append(p)
    if len(dims) > 1:
        uses = "; ".join(f"{d}: {', '.join(ps[:3])}" for d, ps in dims.items())
        raise UsageError(
            f"input.combine = 'concat': in {first.filename!r} no dataset may grow along axis "
            f"{axis} and the datasets use different dimensions there ({uses}): name the ones "
            "to join in input.datasets"
        )
    return data


def _checked(
    f: h5py.File,
    path: str,
    expected: tuple[tuple[int, ...], np.dtype[Any]],
    names: tuple[Path, Path],
    combine: str,
    axis: int,
) -> tuple[int, ...]:
    """``path``'s shape in ``f``, checked against the first file's; else a job error."""
    dset = f.get(path)
    first, this = (str(n) for n in names)
    if not isinstance(dset, h5py.Dataset):
        raise UsageError(f"dataset {path} is missing from {this!r} (it is in {first!r})")
    shape, dtype = expected
    if dset.dtype != dtype:
        raise UsageError(
            f"dataset {path}: dtype {dset.dtype} in {this!r} but {dtype} in {first!r} "
            "(valid: the same dtype in every file)"
        )
    same = dset.shape == shape
    if combine == "concat" and dset.shape is not None and len(dset.shape) == len(shape):
        same = all(
            a == b for i, (a, b) in enumerate(zip(dset.shape, shape, strict=True)) if i != axis
        )
    if not same:
        along = "" if combine == "stack" else f" but along axis {axis}"
        raise UsageError(
            f"dataset {path}: shape {dset.shape} in {this!r}, {shape} in {first!r} (valid: "
            f"the same shape in every file{along})"
        )
    return tuple(dset.shape)


class _Increasing:
    """Refuses ``order_by`` values that do not increase through the joined files."""

    def __init__(self, order_by: str) -> None:
        self.order_by, self.where = order_by, Path()
        self.last: Any = None  # the last value seen

    def check(self, f: h5py.File, path: Path) -> None:
        """Check the values of file ``f`` (at ``path``), the next in the series."""
        for value in np.asarray(f[self.order_by][()]).reshape(-1).tolist():
            if self.last is not None and not value > self.last:
                raise UsageError(
                    f"input.order_by = {self.order_by!r}: {value!r} in {str(path)!r} follows "
                    f"{self.last!r} in {str(self.where)!r} (valid: values that increase "
                    "through the files, no duplicates)"
                )
            self.last, self.where = value, path


def write_joined(survey: Survey, path: Path) -> None:
    """Write the joined file of ``survey`` at ``path`` (a temporary name first, then renamed).

    Joined datasets keep the first file's attributes and attached scales; a stacked
    series gets the scale :data:`MEMBER` along its new axis.
    """
    temp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with _opened(survey.files[0]) as src, h5py.File(temp, "w") as dst:
            if survey.member is not None and MEMBER in src:
                raise UsageError(
                    f"input.combine = 'stack': {str(survey.files[0])!r} has a {MEMBER} "
                    "already, the name of the new axis (valid: files without it)"
                )
            folder = os.path.realpath(path.parent)  # sources are named relative to the file
            names = [os.path.relpath(os.path.realpath(f), folder) for f in survey.files]
            targets = {p: _virtual(src, p, j, names) for p, j in survey.joined.items()}
            build_output(src, dst, targets)
            if survey.member is not None:
                _member_axis(src, dst, list(survey.joined), survey.member)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _virtual(src: h5py.File, path: str, joined: Joined, names: Sequence[str]) -> dict[str, Any]:
    """``build_output``'s creation arguments of one joined dataset: a virtual one.

    It may grow along the axes the first file's dataset may grow along (netCDF's
    record axis stays unlimited).
    """
    dset = src[path]
    grows = (0,) * (len(joined.shape) - len(dset.maxshape)) + tuple(dset.maxshape)
    maxshape = tuple(None if m is None else n for n, m in zip(joined.shape, grows, strict=True))
    layout = h5py.VirtualLayout(shape=joined.shape, dtype=dset.dtype, maxshape=maxshape)
    for k, name in enumerate(names):
        source = h5py.VirtualSource(
            vds_name(name), vds_name(path), shape=joined.shapes[k], dtype=dset.dtype
        )
        if joined.combine == "stack":
            layout[k] = source
        else:
            layout[joined.part(k)] = source
    return {"virtual": layout, "fillvalue": source_layout(dset).fillvalue}


def _member_axis(src: h5py.File, dst: h5py.File, stacked: list[str], values: list[Any]) -> None:
    """Give every stacked dataset the scale :data:`MEMBER` on axis 0, its own scales after.

    The first file's scales were copied attached to the old axis numbers: they are
    attached again one axis further.
    """
    member = dst.create_dataset(MEMBER, data=np.asarray(values))
    member.make_scale(MEMBER.lstrip("/"))
    ids = [int(np.asarray(dst[p].attrs[DIMID]).reshape(-1)[0]) for p in _scales(dst)]
    if ids:  # a netCDF-4 file: every dimension has an id
        member.attrs.create(DIMID, max(ids) + 1, dtype="i4")
    for path in stacked:
        dset, scales = dst[path], attached(src[path])
        for name in {s for axis in scales for s in axis}:
            _forget_user(dst[name], dset)
        with contextlib.suppress(KeyError):
            del dset.attrs["DIMENSION_LIST"]
        dset.dims[0].attach_scale(member)
        for axis, names in enumerate(scales):
            for name in names:
                dset.dims[axis + 1].attach_scale(dst[name])
    netcdf_coordinates(dst, [p for p in stacked if COORDINATES in dst[p].attrs])


def _scales(f: h5py.File) -> list[str]:
    """The datasets of ``f`` that carry a netCDF dimension id."""
    return [p for p, n in dataset_attributes(f).items() if n and DIMID in f[p].attrs]


def _forget_user(scale: h5py.Dataset, dset: h5py.Dataset) -> None:
    """Drop ``dset``'s entries from ``scale``'s ``REFERENCE_LIST`` (the attribute if none stay)."""
    if "REFERENCE_LIST" not in scale.attrs:
        return
    entries = scale.attrs["REFERENCE_LIST"]
    dtype = scale.attrs.get_id("REFERENCE_LIST").dtype
    address = h5o.get_info(dset.id).addr
    kept = [e for e in entries if not e[0] or h5o.get_info(scale.file[e[0]].id).addr != address]
    del scale.attrs["REFERENCE_LIST"]
    if kept:
        scale.attrs.create("REFERENCE_LIST", np.array(kept, dtype=dtype), dtype=dtype)


def feeding_files(dset: h5py.Dataset, region: Sequence[Sequence[int]] | None) -> list[str]:
    """The source files of virtual dataset ``dset`` that ``region`` reads, in mapping order.

    ``region`` is ``[[start, stop], ...]`` (None: nothing); an ordinary dataset has none.
    """
    if region is None or not dset.is_virtual:
        return []
    names = []
    for source in dset.virtual_sources():
        low, high = source.vspace.get_select_bounds()
        bounds = zip(low, high, region, strict=True)
        if all(lo < stop and start <= hi for lo, hi, (start, stop) in bounds):
            names.append(source_name(source.file_name))
    return list(dict.fromkeys(names))
