"""Dimension scales of a selection's output, and netCDF-4's own attributes kept consistent.

Rank 0 finds during inspection which scales the output needs (:func:`plan_dimensions`, the
naming is :func:`h5par.core.dimensions.dimensions`); building the output makes them: a scale
sliced in place is created with its selected values by :func:`h5par.hdf5.hierarchy.build_output`
(:func:`sliced_scales`), a new one next to its input scale by :func:`attach_dimensions`, which
then attaches every user (``DIMENSION_LIST`` and ``REFERENCE_LIST``) and keeps netCDF-4's
``_Netcdf4Dimid`` (a dimension's id) and ``_Netcdf4Coordinates`` (a variable's dimension
ids, which netCDF readers trust over ``DIMENSION_LIST``) consistent.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

import h5py
import numpy as np

from h5par.core.dimensions import (
    PLACEHOLDER,
    Dimension,
    Use,
    axis_map,
    dimensions,
    pick_index,
    placeholder_name,
)
from h5par.core.units import Target
from h5par.hdf5.hierarchy import (
    copy_attrs,
    create_dataset,
    create_target,
    dataset_paths,
    kept_type,
    link_names,
    source_layout,
)

__all__ = [
    "attach_dimensions",
    "attached",
    "create_derived",
    "is_placeholder",
    "netcdf_coordinates",
    "plan_dimensions",
    "sliced_scales",
]

DIMID = "_Netcdf4Dimid"
COORDINATES = "_Netcdf4Coordinates"


def attached(dset: h5py.Dataset) -> list[list[str]]:
    """The paths of the dimension scales attached to each axis of ``dset``."""
    if "DIMENSION_LIST" not in dset.attrs:
        return [[] for _ in dset.shape or ()]
    file = dset.file
    return [[file[ref].name for ref in refs if ref] for refs in dset.attrs["DIMENSION_LIST"]]


def users(scale: h5py.Dataset) -> list[str]:
    """The paths of the datasets ``scale``'s ``REFERENCE_LIST`` names."""
    if "REFERENCE_LIST" not in scale.attrs:
        return []
    return [scale.file[entry[0]].name for entry in scale.attrs["REFERENCE_LIST"] if entry[0]]


def plan_dimensions(
    src: h5py.File, targets: Iterable[Target], selected: Collection[str] | None
) -> tuple[list[Dimension], list[str] | None]:
    """The scales a selection's output needs, and the datasets a drop output keeps.

    ``selected`` is None when everything unselected is copied, else the datasets the job
    selected (``output.unselected = "drop"``): then the second result lists them with the
    scales they use (None: every dataset is kept).
    """
    by_path = {t.path: t for t in targets}
    if selected is None:
        picking = [t for t in by_path.values() if t.select is not None]
        scales = {s for t in picking for s in _picked_scales(src, t)}
        kept = list(dict.fromkeys([*by_path, *(u for s in sorted(scales) for u in users(src[s]))]))
    else:
        kept = list(selected)
        scales = {s for p in kept for axis in attached(src[p]) for s in axis}
    uses = [u for p in kept if scales for u in _uses(src, p, by_path.get(p), scales)]
    groups = {s.rpartition("/")[0] or "/" for s in scales}
    found = dimensions(uses, {g: link_names(src[g]) for g in groups})
    if selected is None:
        return found, None
    whole = {u.scale for u in uses if u.pick is None}
    keep = [*selected, *sorted(whole | {d.scale for d in found if d.in_place})]
    return found, list(dict.fromkeys(keep))


def _picked_scales(src: h5py.File, target: Target) -> list[str]:
    """Scales attached to the axes ``target``'s selection cuts."""
    axes = attached(src[target.path])
    return [s for axis, (_, pick) in axis_map(target).items() if pick for s in axes[axis]]


def _uses(src: h5py.File, path: str, target: Target | None, scales: Collection[str]) -> list[Use]:
    """How output dataset ``path`` uses the ``scales`` attached to it (1-d, matching lengths)."""
    dset = src[path]
    if target is None:
        axes: Mapping[int, tuple[int, Any]] = {a: (a, None) for a in range(len(dset.shape or ()))}
    else:
        axes = axis_map(target)
    found = []
    for axis, names in enumerate(attached(dset)):
        if axis not in axes:
            continue
        for name in names:
            scale = src[name]
            if name in scales and scale.shape == (dset.shape[axis],):
                found.append(Use(path, axes[axis][0], name, axes[axis][1]))
    return found


def sliced_scales(src: h5py.File, dims: Iterable[Dimension]) -> dict[str, dict[str, Any]]:
    """How build_output creates the scales sliced in place: ``{path: create arguments}``."""
    return {d.path: _scale_create(src[d.scale], d) for d in dims if d.in_place}


def is_placeholder(scale: h5py.Dataset) -> bool:
    """True for netCDF-4's dimension without a coordinate variable (no values to keep)."""
    name = scale.attrs.get("NAME", b"")
    return isinstance(name, bytes | str) and _text(name).startswith(PLACEHOLDER)


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _scale_create(scale: h5py.Dataset, dim: Dimension) -> dict[str, Any]:
    """Creation arguments of ``dim``'s scale: the input scale's type, fill value, filters.

    An unlimited scale stays unlimited (netCDF's record dimension, as ``ncks -d`` keeps it).
    """
    layout, n = source_layout(scale), dim.length
    create: dict[str, Any] = {"shape": (n,), "dtype": scale.dtype, **kept_type(scale, scale.dtype)}
    if layout.fillvalue is not None:
        create["fillvalue"] = layout.fillvalue
    if layout.chunks is not None:
        create["chunks"] = (max(1, min(layout.chunks[0], n)),)
        create["maxshape"] = (None,) if scale.maxshape == (None,) else (n,)
        if layout.compression is not None:
            create.update(compression=layout.compression, compression_opts=layout.compression_opts)
        create.update(shuffle=layout.shuffle, fletcher32=layout.fletcher32)
    if not is_placeholder(scale):
        create["data"] = np.asarray(scale[pick_index(dim.pick)], dtype=scale.dtype)
    return create


def attach_dimensions(src: h5py.File, dst: h5py.File, dims: Iterable[Dimension]) -> None:
    """Make the new scales of ``dims`` in ``dst``, attach their users, fix netCDF's ids.

    The users' axes were detached from the input's scale (:func:`reattach_scales`); scales
    sliced in place exist already (:func:`sliced_scales`).
    """
    dims = list(dims)
    if not dims:
        return
    next_id = 1 + max((_dimid(dst[p]) for p in dataset_paths(dst)), default=-1)
    for dim in dims:
        if not dim.in_place:
            _make_scale(src[dim.scale], dst, dim, next_id)
            next_id += 1
        elif is_placeholder(src[dim.scale]):
            dst[dim.path].attrs.modify("NAME", np.bytes_(placeholder_name(dim.length)))
        scale = dst[dim.path]
        for path, axis in dim.users:
            dst[path].dims[axis].attach_scale(scale)


def _dimid(dset: h5py.Dataset) -> int:
    """``dset``'s netCDF dimension id, -1 without one."""
    if DIMID not in dset.attrs:
        return -1
    return int(np.asarray(dset.attrs[DIMID]).reshape(-1)[0])


def _make_scale(scale: h5py.Dataset, dst: h5py.File, dim: Dimension, dimid: int) -> None:
    """Create ``dim``'s new scale from the input's ``scale``: values, attributes, netCDF id."""
    group, _, name = dim.path.rpartition("/")
    new = create_dataset(dst[group or "/"], name, _scale_create(scale, dim))
    title = placeholder_name(dim.length) if is_placeholder(scale) else name
    new.make_scale(title)
    if DIMID in scale.attrs:
        new.attrs.create(DIMID, dimid, dtype=scale.attrs.get_id(DIMID).dtype)
    if COORDINATES in scale.attrs:
        new.attrs.create(COORDINATES, [dimid], dtype=scale.attrs.get_id(COORDINATES).dtype)
    copy_attrs(scale, new, skip=("REFERENCE_LIST", "DIMENSION_LIST"))


def create_derived(
    src: h5py.File, dst: h5py.File, target: Target, create: Mapping[str, Any]
) -> None:
    """Create derived dataset ``target`` empty in ``dst`` (groups on its path too).

    Its ``_FillValue`` is the result's; it takes the dimension scales of the input of its
    shape (``target.like``), as that input has them in the output.
    """
    group, _, name = target.path.rpartition("/")
    dset = create_target(dst.require_group(group or "/"), name, create)
    if target.out_fill is not None:
        dset.attrs.create("_FillValue", target.out_fill, dtype=target.out_dtype)
    if target.like is None or target.out_shape != target.shape:
        return
    like = dst[target.like] if target.like in dst else src[target.like]
    for axis, scales in enumerate(attached(like)):
        for path in scales:
            if path in dst and dst[path].shape == (target.shape[axis],):
                dset.dims[axis].attach_scale(dst[path])


def netcdf_coordinates(dst: h5py.File, paths: Iterable[str]) -> None:
    """Rewrite ``_Netcdf4Coordinates`` of ``paths`` from the scales now attached.

    netCDF readers take a variable's dimensions from this attribute: after a change of
    shape it must name the dimension of each axis, or go (an axis without a scale: netCDF
    then makes up a dimension for it, as for any HDF5 dataset).
    """
    for path in paths:
        dset = dst[path]
        if COORDINATES not in dset.attrs:
            continue
        dtype = dset.attrs.get_id(COORDINATES).dtype
        ids = [[_dimid(dst[s]) for s in axis] for axis in attached(dset)]
        del dset.attrs[COORDINATES]
        if ids and all(len(axis) == 1 and axis[0] >= 0 for axis in ids):
            dset.attrs.create(COORDINATES, [axis[0] for axis in ids], dtype=dtype)
