"""``h5par ls``: the hierarchy of a file, like ``h5ls -r -v`` and ``ncdump -h`` (metadata only).

Dimension scales (netCDF-4's dimensions and coordinate variables) are listed first, with
their lengths; each dataset names the dimensions of its axes, ``T(time, z, y, x)``. The
bookkeeping attributes of dimension scales and netCDF-4 (:data:`INTERNAL`) and netCDF's
dimension-only placeholders are shown only with ``everything``. One process.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from h5py import h5l, h5z

from h5par.core.sizes import format_size
from h5par.hdf5.dimensions import attached, is_placeholder
from h5par.hdf5.hierarchy import is_scale, link_names, object_key
from h5par.hdf5.io import open_input

__all__ = ["INTERNAL", "dimension_names", "list_file"]

#: Attributes HDF5's dimension scales and netCDF-4 keep for themselves (``ls --all`` shows them).
INTERNAL = frozenset(
    {"CLASS", "NAME", "DIMENSION_LIST", "REFERENCE_LIST", "_Netcdf4Dimid",
     "_Netcdf4Coordinates", "_NCProperties"}
)  # fmt: skip


def list_file(path: str | Path, attributes: bool = True, everything: bool = False) -> str:
    """The tree of ``path``: dimensions, groups, datasets, attributes and links.

    Datasets with their dimensions, dtype and shape, chunks, filters, stored size and fill
    value; ``everything`` adds the internal attributes and netCDF's placeholders.
    """
    with open_input(Path(path), "auto", {}) as f:
        show = _Show(attributes, everything)
        lines = _dimension_lines(f)
        lines.append(f"/  group{show.summary(f)}")
        lines += show.attributes(f, "  ")
        _walk(f, "", lines, {object_key(f): "/"}, show)
    return "\n".join(lines)


class _Show:
    """What a listing shows: attributes or not, internal ones and placeholders or not."""

    def __init__(self, attributes: bool, everything: bool) -> None:
        self.wanted, self.everything = attributes, everything

    def names(self, obj: h5py.HLObject) -> list[str]:
        names = list(obj.attrs)
        return names if self.everything else [n for n in names if n not in INTERNAL]

    def summary(self, obj: h5py.HLObject) -> str:
        try:
            n = len(self.names(obj))
        except (OSError, RuntimeError) as exc:
            return f"  (attributes unreadable: {exc})"
        return f"  ({n} attribute{'s' if n != 1 else ''})" if n else ""

    def attributes(self, obj: h5py.HLObject, indent: str) -> list[str]:
        if not self.wanted:
            return []
        try:
            names = self.names(obj)
        except (OSError, RuntimeError):
            return []  # already said in the object's summary
        lines = []
        for name in names:
            try:
                text = _short(obj.attrs[name])
            except (OSError, RuntimeError, TypeError, ValueError) as exc:
                text = f"<unreadable: {exc}>"
            lines.append(f"{indent}@{name} = {text}")
        return lines

    def hidden(self, obj: h5py.HLObject) -> bool:
        """True for a netCDF dimension-only placeholder (listed under dimensions)."""
        return not self.everything and _placeholder(obj)


def _placeholder(obj: h5py.HLObject) -> bool:
    """True for netCDF's dimension-only placeholder (False when its name is unreadable)."""
    if not isinstance(obj, h5py.Dataset):
        return False
    with contextlib.suppress(OSError, RuntimeError, KeyError, TypeError, ValueError):
        return is_placeholder(obj)
    return False


def _scales(f: h5py.File) -> list[h5py.Dataset]:
    """Every dimension scale of the file, in path order."""
    found: list[h5py.Dataset] = []

    def visit(name: str, obj: h5py.HLObject) -> None:
        if isinstance(obj, h5py.Dataset) and is_scale(f, name):
            found.append(obj)

    with contextlib.suppress(OSError, RuntimeError):
        f.visititems(visit)
    return found


def _dimension_lines(f: h5py.File) -> list[str]:
    """``dimensions:`` and one line per scale: ``name = length (unlimited)  path``."""
    scales = [s for s in _scales(f) if s.shape is not None and len(s.shape) == 1]
    if not scales:
        return []
    lines = ["dimensions:"]
    for scale in scales:
        unlimited = "" if scale.maxshape != (None,) else " (unlimited)"
        role = "  (dimension only)" if _placeholder(scale) else ""
        size = f"{Path(scale.name).name} = {scale.shape[0]}{unlimited}"
        lines.append(f"  {size:24} {scale.name}{role}")
    return lines


def dimension_names(dset: h5py.Dataset) -> str:
    """``(time, z, y, x)``: the scales attached to each axis ('' when none is).

    A 1-d scale is its own dimension, ``time(time)``, as ``ncdump`` writes it.
    """
    names = []
    with contextlib.suppress(OSError, RuntimeError, KeyError, TypeError, ValueError):
        if dset.is_scale and dset.shape is not None and len(dset.shape) == 1:
            return f"({Path(dset.name).name})"
        names = [Path(paths[0]).name if paths else "-" for paths in attached(dset)]
    return f"({', '.join(names)})" if any(n != "-" for n in names) else ""


def _walk(
    group: h5py.Group, prefix: str, lines: list[str], seen: dict[Any, str], show: _Show
) -> None:
    for name in link_names(group):
        path = f"{prefix}/{name}"
        kind = group.id.links.get_info(name.encode()).type
        if kind == h5l.TYPE_SOFT:
            lines.append(f"{path}  soft link -> {group.get(name, getlink=True).path}")
            continue
        if kind == h5l.TYPE_EXTERNAL:
            link = group.get(name, getlink=True)
            lines.append(f"{path}  external link -> {link.filename}:{link.path}")
            continue
        if kind != h5l.TYPE_HARD:
            lines.append(f"{path}  user-defined link (type {kind})")
            continue
        try:
            obj = group[name]
        except (KeyError, OSError, RuntimeError) as exc:
            lines.append(f"{path}  unreadable object: {exc}")
            continue
        key = object_key(obj)
        if key in seen:
            lines.append(f"{path}  hard link, same object as {seen[key]}")
            continue
        seen[key] = path
        if show.hidden(obj):
            continue
        try:
            named = path + (dimension_names(obj) if isinstance(obj, h5py.Dataset) else "")
            lines.append(f"{named}  {_describe(obj)}{show.summary(obj)}")
        except (OSError, RuntimeError, TypeError, ValueError) as exc:
            lines.append(f"{path}  {type(obj).__name__.lower()} (not describable: {exc})")
        lines += show.attributes(obj, "    ")
        if isinstance(obj, h5py.Group):
            _walk(obj, path, lines, seen, show)


def _describe(obj: h5py.HLObject) -> str:
    if isinstance(obj, h5py.Group):
        return "group"
    if isinstance(obj, h5py.Datatype):
        return f"named datatype {obj.dtype}"
    dset: h5py.Dataset = obj
    if dset.shape is None:
        shape = " null"
    else:
        shape = " scalar" if dset.shape == () else f"[{', '.join(map(str, dset.shape))}]"
    parts = [f"dataset {dset.dtype}{shape}"]
    if dset.chunks:
        parts.append(f"chunks={dset.chunks}")
    if dset.is_virtual:
        files = {source.file_name for source in dset.virtual_sources()}
        parts.append(f"virtual ({len(files)} source file(s))")
    filters = _filters(dset)
    if filters:
        parts.append("filters=" + ",".join(filters))
    if dset.maxshape is not None and dset.shape is not None and dset.maxshape != dset.shape:
        parts.append(f"maxshape={dset.maxshape}")
    if not dset.is_virtual:
        parts.append(f"stored={format_size(dset.id.get_storage_size())}")
    with contextlib.suppress(OSError, RuntimeError, TypeError, ValueError):
        parts.append(f"fill={_short(dset.fillvalue)}")
    return "  ".join(parts)


def _filters(dset: h5py.Dataset) -> list[str]:
    """The filter pipeline: ``shuffle``, ``deflate(4)`` (its level), ``fletcher32``, ..."""
    dcpl = dset.id.get_create_plist()
    names = []
    for i in range(dcpl.get_nfilters()):
        code, _, values, name = dcpl.get_filter(i)
        text = name.decode(errors="replace")
        names.append(f"{text}({values[0]})" if code == h5z.FILTER_DEFLATE and values else text)
    return names


def _short(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if isinstance(value, np.ndarray) and value.size > 6:
        return f"array{value.shape} {value.dtype} [{', '.join(map(str, value.flat[:3]))}, ...]"
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= 100 else text[:97] + "..."
