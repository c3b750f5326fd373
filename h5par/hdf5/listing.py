"""``h5par ls``: the hierarchy of a file, like ``h5ls -r -v`` (one process, metadata only)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from h5py import h5l

from h5par.hdf5.hierarchy import link_names, object_key
from h5par.hdf5.io import open_input

__all__ = ["list_file"]


def list_file(path: str | Path, attributes: bool = True) -> str:
    """The tree of ``path``: groups, datasets (shape, dtype, chunks, filters, fill), links."""
    with open_input(Path(path), "auto", {}) as f:
        lines = [f"/  group{_attrs_summary(f)}"]
        if attributes:
            lines += _attribute_lines(f, "  ")
        _walk(f, "", lines, {object_key(f): "/"}, attributes)
    return "\n".join(lines)


def _walk(
    group: h5py.Group, prefix: str, lines: list[str], seen: dict[Any, str], attributes: bool
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
        try:
            lines.append(f"{path}  {_describe(obj)}")
        except (OSError, RuntimeError, TypeError, ValueError) as exc:
            lines.append(f"{path}  {type(obj).__name__.lower()} (not describable: {exc})")
        if attributes:
            lines += _attribute_lines(obj, "    ")
        if isinstance(obj, h5py.Group):
            _walk(obj, path, lines, seen, attributes)


def _describe(obj: h5py.HLObject) -> str:
    if isinstance(obj, h5py.Group):
        return f"group{_attrs_summary(obj)}"
    if isinstance(obj, h5py.Datatype):
        return f"named datatype {obj.dtype}"
    dset: h5py.Dataset = obj
    shape = "null" if dset.shape is None else ("scalar" if dset.shape == () else str(dset.shape))
    parts = [f"dataset {shape} {dset.dtype}"]
    if dset.chunks:
        parts.append(f"chunks={dset.chunks}")
    if dset.is_virtual:
        files = {source.file_name for source in dset.virtual_sources()}
        parts.append(f"virtual ({len(files)} source file(s))")
    filters = list(
        dset.id.get_create_plist().get_filter(i)[3].decode(errors="replace")
        for i in range(dset.id.get_create_plist().get_nfilters())
    )
    if filters:
        parts.append("filters=" + ",".join(filters))
    if dset.maxshape is not None and dset.shape is not None and dset.maxshape != dset.shape:
        parts.append(f"maxshape={dset.maxshape}")
    with contextlib.suppress(OSError, RuntimeError, TypeError, ValueError):
        parts.append(f"fill={_short(dset.fillvalue)}")
    return "  ".join(parts) + _attrs_summary(dset)


def _attrs_summary(obj: h5py.HLObject) -> str:
    try:
        n = len(obj.attrs)
    except (OSError, RuntimeError) as exc:
        return f"  (attributes unreadable: {exc})"
    return f"  ({n} attribute{'s' if n != 1 else ''})" if n else ""


def _attribute_lines(obj: h5py.HLObject, indent: str) -> list[str]:
    lines: list[str] = []
    try:
        names = list(obj.attrs)
    except (OSError, RuntimeError):
        return lines  # already said in the object's summary
    for name in names:
        try:
            value = obj.attrs[name]
            text = _short(value)
        except (OSError, RuntimeError, TypeError, ValueError) as exc:
            text = f"<unreadable: {exc}>"
        lines.append(f"{indent}@{name} = {text}")
    return lines


def _short(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if isinstance(value, np.ndarray) and value.size > 6:
        return f"array{value.shape} {value.dtype} [{', '.join(map(str, value.flat[:3]))}, ...]"
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= 100 else text[:97] + "..."
