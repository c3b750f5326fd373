"""Walking the HDF5 hierarchy: listing datasets, copying attributes, links and objects.

Structure is built by one process before the parallel data phase (see ``runner``): with
no other rank involved, nothing can diverge, and HDF5's own object copy keeps every
untouched dataset exact.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import h5py
import numpy as np
from h5py import h5a, h5d, h5o, h5s

from .layout import SourceLayout

__all__ = ["build_output", "copy_attrs", "dataset_paths", "source_layout"]

_KNOWN_FILTERS = ("gzip", "lzf", "szip")


def _object_key(obj: h5py.HLObject) -> tuple[int, int]:
    info = h5o.get_info(obj.id)
    return (info.fileno, info.addr)


def dataset_paths(group: h5py.Group) -> list[str]:
    """Absolute paths of every dataset reachable by hard links (the first path of each).

    Soft and external links are not followed: they are copied as links.
    """
    paths: list[str] = []
    seen: set[tuple[int, int]] = set()

    def walk(grp: h5py.Group, prefix: str) -> None:
        for name in grp:
            if not isinstance(grp.get(name, getlink=True), h5py.HardLink):
                continue
            obj = grp[name]
            key = _object_key(obj)
            if key in seen:
                continue
            seen.add(key)
            if isinstance(obj, h5py.Dataset):
                paths.append(f"{prefix}/{name}")
            elif isinstance(obj, h5py.Group):
                walk(obj, f"{prefix}/{name}")

    walk(group, "")
    return paths


def source_layout(dset: h5py.Dataset) -> SourceLayout:
    """The creation properties of ``dset`` that an output may keep."""
    dcpl = dset.id.get_create_plist()
    user_fill = dcpl.fill_value_defined() == h5d.FILL_VALUE_USER_DEFINED
    compression = dset.compression if dset.compression in _KNOWN_FILTERS else None
    return SourceLayout(
        chunks=dset.chunks,
        maxshape=dset.maxshape,
        compression=compression,
        compression_opts=dset.compression_opts if compression else None,
        shuffle=bool(dset.shuffle),
        fletcher32=bool(dset.fletcher32),
        scaleoffset=dset.scaleoffset,
        fillvalue=dset.fillvalue if user_fill else None,
    )


def copy_attrs(src: h5py.HLObject, dst: h5py.HLObject) -> None:
    """Copy every attribute with its exact HDF5 type and dataspace (empty ones included)."""
    for name in src.attrs:
        raw = name.encode() if isinstance(name, str) else name
        attr = h5a.open(src.id, raw)
        space = attr.get_space()
        new = h5a.create(dst.id, raw, attr.get_type(), space)
        if space.get_simple_extent_type() == h5s.NULL or space.get_simple_extent_npoints() == 0:
            continue
        shape = space.shape if space.get_simple_extent_type() == h5s.SIMPLE else ()
        data = np.empty(shape, attr.dtype)
        attr.read(data)
        new.write(data)


def build_output(
    src: h5py.Group,
    dst: h5py.Group,
    targets: Mapping[str, Mapping[str, Any]],
    copy: Callable[[h5py.Group, str, h5py.Group], None] | None = None,
) -> None:
    """Recreate ``src``'s hierarchy in ``dst``: targets are created empty, the rest copied.

    ``targets`` maps dataset paths to ``create_dataset`` keyword arguments; attributes of
    groups and targets are copied; soft, external and repeated hard links are linked again;
    other objects are copied with HDF5's object copy.
    """
    copy_attrs(src, dst)
    made: dict[tuple[int, int], str] = {}
    _build(src, dst, "", targets, made, copy or _h5o_copy)


def _h5o_copy(src_group: h5py.Group, name: str, dst_group: h5py.Group) -> None:
    src_group.copy(src_group[name], dst_group, name)


def _build(
    src: h5py.Group,
    dst: h5py.Group,
    prefix: str,
    targets: Mapping[str, Mapping[str, Any]],
    made: dict[tuple[int, int], str],
    copy: Callable[[h5py.Group, str, h5py.Group], None],
) -> None:
    for name in src:
        path = f"{prefix}/{name}"
        link = src.get(name, getlink=True)
        if isinstance(link, h5py.SoftLink | h5py.ExternalLink):
            dst[name] = link
            continue
        obj = src[name]
        key = _object_key(obj)
        if key in made:
            dst[name] = dst.file[made[key]]
            continue
        made[key] = path
        if isinstance(obj, h5py.Group):
            order = bool(obj.id.get_create_plist().get_link_creation_order())
            group = dst.create_group(name, track_order=order or None)
            copy_attrs(obj, group)
            _build(obj, group, path, targets, made, copy)
        elif isinstance(obj, h5py.Dataset) and path in targets:
            copy_attrs(obj, dst.create_dataset(name, **targets[path]))
        else:
            copy(src, name, dst)
