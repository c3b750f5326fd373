"""Walking the HDF5 hierarchy: listing datasets, copying objects, attributes and links.

Structure is built by one process before the parallel data phase (see ``runner``): with no
other rank involved, nothing can diverge. The output mirrors the input's paths in two passes:

1. groups, links and objects: untouched datasets and named datatypes are copied with HDF5's
   object copy *without attributes* (HDF5 1.10's cross-file copy crashes on attributes that
   hold references, e.g. netCDF-4 ``DIMENSION_LIST``) — big chunked datasets by their stored
   chunks, so that the copy beats the watchdog —, processed datasets are created empty;
2. attributes of every object, and datasets holding references, are copied with each
   object or region reference remapped to the same path in the output, so dimension scales,
   ``REFERENCE_LIST`` and region references stay valid.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from h5py import h5a, h5d, h5g, h5l, h5o, h5p, h5r, h5s, h5t

from h5par.core.globs import on_paths
from h5par.core.layout import SourceLayout
from h5par.errors import H5ParError, UsageError
from h5par.hdf5.io import same_bytes
from h5par.parallel import faults, guard

__all__ = [
    "build_output",
    "copy_attrs",
    "create_target",
    "create_type",
    "dataset_attributes",
    "dataset_paths",
    "filtered_chunks",
    "has_refs",
    "is_scale",
    "kept_type",
    "link_names",
    "object_key",
    "source_layout",
    "source_name",
    "vds_name",
]

_KNOWN_FILTERS = ("gzip", "lzf", "szip")
Key = tuple[int, int]


def object_key(obj: h5py.HLObject) -> Key:
    """Identity of an HDF5 object (file number, address): equal for hard links to it."""
    info = h5o.get_info(obj.id)
    return (info.fileno, info.addr)


def link_names(group: h5py.Group) -> list[str]:
    """Names of every link in ``group``, in HDF5's iteration order, user-defined ones included."""
    return link_names_of(group.id)


def link_names_of(gid: h5g.GroupID) -> list[str]:
    """:func:`link_names` of a low-level group identifier."""
    names: list[bytes] = []
    gid.links.iterate(names.append)
    return [n.decode() for n in names]


def dataset_paths(group: h5py.Group) -> list[str]:
    """Absolute paths of every dataset reachable by hard links (the first path of each).

    Soft, external and user-defined links are not followed: they are copied as links.
    """
    return list(dataset_attributes(group))


def dataset_attributes(group: h5py.Group) -> dict[str, int]:
    """``{path: number of attributes}`` of the datasets :func:`dataset_paths` lists, in order.

    Objects are asked for their header information, not opened: a listing of thousands
    of datasets costs microseconds each (a dataset without attributes is no dimension scale).
    """
    found: dict[str, int] = {}
    seen: set[Key] = set()

    def walk(gid: h5g.GroupID, prefix: str) -> None:
        for name in link_names_of(gid):
            raw = name.encode()
            if gid.links.get_info(raw).type != h5l.TYPE_HARD:
                continue
            try:
                info = h5o.get_info(gid, raw)
            except (KeyError, OSError, RuntimeError) as exc:  # HDF5 refused its header
                raise OSError(f"cannot open {prefix}/{name}: {exc}") from exc
            key = (info.fileno, info.addr)
            if key in seen:
                continue
            seen.add(key)
            if info.type == h5o.TYPE_DATASET:
                found[f"{prefix}/{name}"] = info.num_attrs
            elif info.type == h5o.TYPE_GROUP:
                try:
                    child = h5g.open(gid, raw)
                except (KeyError, OSError, RuntimeError) as exc:
                    raise OSError(f"cannot open {prefix}/{name}: {exc}") from exc
                walk(child, f"{prefix}/{name}")

    walk(group.id, "")
    return found


def source_layout(dset: h5py.Dataset) -> SourceLayout:
    """The creation properties of ``dset`` that an output may keep.

    A virtual dataset keeps the chunks and filters of its first source (see
    :func:`_first_source`), so consolidating subfiled parts or joining a series of files
    keeps their layout.
    """
    dcpl = dset.id.get_create_plist()
    user_fill = dcpl.fill_value_defined() == h5d.FILL_VALUE_USER_DEFINED
    if dset.is_virtual:
        first = _first_source(dset)
        fill = dset.fillvalue if user_fill else None
        if first is None:
            return SourceLayout(maxshape=dset.maxshape, fillvalue=fill)
        return dataclasses.replace(first, fillvalue=fill)
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


def is_scale(src: h5py.Group, path: str) -> bool:
    """True when the dataset at ``path`` is a dimension scale (``CLASS = "DIMENSION_SCALE"``).

    Attributes HDF5 cannot read (a newer HDF5's reference type) say nothing: the dataset
    counts as data, and its inspection names what fails, as for any other dataset.
    """
    try:
        return bool(src[path].is_scale)
    except (OSError, RuntimeError, KeyError, TypeError, ValueError):
        return False


def filtered_chunks(dset: h5py.Dataset) -> tuple[int, ...] | None:
    """The chunks of a dataset stored through filters (None: unfiltered, contiguous, virtual).

    Reading any part of such a chunk decompresses all of it.
    """
    if dset.is_virtual or dset.chunks is None or dset.id.get_create_plist().get_nfilters() == 0:
        return None
    return tuple(dset.chunks)


def kept_type(dset: h5py.Dataset, out_dtype: np.dtype[Any]) -> dict[str, bytes]:
    """``{"hdf5_type": ...}`` when an output of ``out_dtype`` keeps ``dset``'s own HDF5 type.

    h5py creates a dataset of a numpy dtype with ``py_create(dtype)``: a bitfield would
    become an integer, an opaque type would lose its tag, a string its padding. An output
    with the input's dtype whose bytes numpy holds exactly (:func:`h5par.hdf5.io.same_bytes`)
    keeps the input's type, encoded (the plan is pickled and fingerprinted); empty when
    h5py would create that type anyway. :func:`create_type` decodes it.
    """
    ftype = dset.id.get_type()
    if out_dtype != dset.dtype or not same_bytes(ftype, out_dtype):
        return {}
    if ftype.equal(h5t.py_create(out_dtype, logical=True)):
        return {}
    return {"hdf5_type": ftype.encode()}


def create_type(create: Mapping[str, Any]) -> Any:
    """The type to create a dataset of ``create`` with: its kept HDF5 type, else its dtype."""
    encoded = create.get("hdf5_type")
    return create["dtype"] if encoded is None else h5t.decode(encoded)


def create_dataset(group: h5py.Group, name: str, create: Mapping[str, Any]) -> h5py.Dataset:
    """``group.create_dataset(name, **create)`` in the type :func:`create_type` gives."""
    kwargs = {k: v for k, v in create.items() if k != "hdf5_type"}
    kwargs["dtype"] = create_type(create)
    return group.create_dataset(name, **kwargs)


def vds_name(name: str) -> str:
    """``name`` as a virtual dataset's source file or dataset name.

    HDF5 reads ``%`` there as a format (``%b``: a block number), ``%%`` as ``%``.
    """
    return name.replace("%", "%%")


def source_name(stored: str) -> str:
    """The name a virtual dataset's stored source file or dataset name stands for."""
    return stored.replace("%%", "%")


def _source_file(dset: h5py.Dataset, name: str) -> Path:
    """Where a virtual dataset's source file ``name`` is: HDF5 looks next to the file."""
    return Path(dset.file.filename) if name == "." else Path(dset.file.filename).parent / name


def missing_sources(dset: h5py.Dataset) -> list[str]:
    """Source files of a virtual dataset that do not exist (HDF5 would read fill values)."""
    names = dict.fromkeys(source_name(s.file_name) for s in dset.virtual_sources())
    return [name for name in names if not _source_file(dset, name).is_file()]


def _first_source(dset: h5py.Dataset) -> SourceLayout | None:
    """The layout of a virtual dataset's first source, fitted to the virtual dataset.

    The source has the virtual dataset's axes, or one fewer (a stacked series: a chunk
    is then one index deep along the new axis 0). Chunks are cut to the virtual shape;
    an axis the source may grow along (netCDF's record axis) may grow in the output too.
    None when the source does not open, is virtual itself or has other axes.
    """
    sources = dset.virtual_sources()
    if not sources:
        return None
    try:
        with h5py.File(_source_file(dset, source_name(sources[0].file_name)), "r") as f:
            source = f[source_name(sources[0].dset_name)]
            new = len(dset.shape) - len(source.shape or ())
            if source.is_virtual or new not in (0, 1) or source.shape is None:
                return None
            layout, grows = source_layout(source), tuple(source.maxshape)
    except (OSError, KeyError):
        return None
    kept = (0,) * new + grows  # the new axis is as long as it is
    maxshape = tuple(n if m is not None else None for n, m in zip(dset.shape, kept, strict=True))
    if layout.chunks is None:
        return dataclasses.replace(layout, maxshape=dset.shape)
    chunks = tuple(
        max(1, min(c, n)) for c, n in zip((1,) * new + layout.chunks, dset.shape, strict=True)
    )
    return dataclasses.replace(layout, chunks=chunks, maxshape=maxshape)


def build_output(
    src: h5py.File,
    dst: h5py.File,
    targets: Mapping[str, Mapping[str, Any]],
    keep: Collection[str] | None = None,
) -> None:
    """Recreate ``src``'s hierarchy in ``dst``: targets are created empty, the rest copied.

    ``targets`` maps dataset paths to ``create_dataset`` keyword arguments, or to
    ``{"virtual": h5py.VirtualLayout, "fillvalue": ...}`` for a virtual dataset. With
    ``keep`` (``output.unselected = "drop"``) only the targets and the datasets ``keep``
    names are made, in the groups on their paths: links, named datatypes and other
    datasets are left out, and references to what is left out become null ones (entries
    of a ``REFERENCE_LIST`` go).
    """
    objects: dict[Key, str] = {}
    later: list[tuple[str, bool]] = []
    wanted = None if keep is None else on_paths([*targets, *keep])
    _build(src, dst, "", _Walk(targets, objects, later, wanted))
    remap = _Remapper(src, dst)
    copy_attrs(src, dst, remap)
    for path, refs in later:
        source, copied = src[path], dst[path]
        copy_attrs(source, copied, remap)
        if refs:
            _copy_reference_data(source, copied, remap)


@dataclasses.dataclass(frozen=True)
class _Walk:
    """What :func:`_build` carries down the hierarchy.

    ``objects`` maps each object made to its path (a second hard link becomes a link to
    it); ``later`` collects the paths whose attributes or references are copied afterwards,
    each with True when it is an untouched dataset holding references.
    """

    targets: Mapping[str, Mapping[str, Any]]
    objects: dict[Key, str]
    later: list[tuple[str, bool]]
    wanted: Collection[str] | None


def _holds_refs(dset: h5py.Dataset) -> bool:
    """True when ``dset`` holds object or region references."""
    dtype = _numpy_dtype(dset)
    return dtype is not None and has_refs(dtype)


def _build(src: h5py.Group, dst: h5py.Group, prefix: str, walk: _Walk) -> None:
    for name in link_names(src):
        path = f"{prefix}/{name}"
        if walk.wanted is not None and path not in walk.wanted:
            continue
        kind = src.id.links.get_info(name.encode()).type
        if kind != h5l.TYPE_HARD:
            _copy_link(src, dst, name, path, kind)
            continue
        oid = h5o.open(src.id, name.encode())  # h5py's wrapper only where it is used
        info = h5o.get_info(oid)
        key = (info.fileno, info.addr)
        if key in walk.objects:  # another hard link to an object already made
            dst[name] = dst.file[walk.objects[key]]
            continue
        walk.objects[key] = path
        dataset = h5py.Dataset(oid) if isinstance(oid, h5d.DatasetID) else None
        target = dataset is not None and path in walk.targets
        refs = dataset is not None and not target and _holds_refs(dataset)
        if info.num_attrs or refs:
            walk.later.append((path, refs))
        if isinstance(oid, h5g.GroupID):
            order = bool(oid.get_create_plist().get_link_creation_order())
            group = dst.create_group(name, track_order=order or None)
            _build(h5py.Group(oid), group, path, walk)
        elif target:
            create_target(dst, name, walk.targets[path])
        else:
            external = dataset is not None and bool(dataset.external)
            del oid, dataset  # an external dataset is reopened with another file prefix
            _copy_object(src, dst, name, path, external)


def create_target(dst: h5py.Group, name: str, create: Mapping[str, Any]) -> h5py.Dataset:
    """An empty processed dataset, or a virtual one (``{"virtual": VirtualLayout, ...}``)."""
    if "virtual" in create:
        return dst.create_virtual_dataset(
            name, create["virtual"], fillvalue=create.get("fillvalue")
        )
    return create_dataset(dst, name, create)


#: Stored bytes from which an untouched chunked dataset is copied chunk by chunk (beating).
CHUNKWISE_COPY_BYTES = 16 * 2**20


def _copy_object(src: h5py.Group, dst: h5py.Group, name: str, path: str, external: bool) -> None:
    """Copy one untouched object; what HDF5 cannot copy is an error naming the object.

    Each object copied, and each chunk of a big chunked dataset, is progress for the
    watchdog (:func:`h5par.parallel.guard.beat`): HDF5's object copy is one call that holds the
    interpreter, so a big dataset is copied by its stored chunks instead.
    """
    guard.beat(f"copying {path}")
    faults.inject("copy")
    try:
        if external:
            _copy_external(src, name, dst)
        elif _chunkwise(src[name]):
            _copy_chunks(src[name], dst, name, path)
        else:
            src.copy(name, dst, name, without_attrs=True)
    except (OSError, RuntimeError, TypeError, ValueError, KeyError) as exc:
        raise H5ParError(f"cannot copy {path}: {exc}") from exc


def _chunkwise(obj: Any) -> bool:
    """True for a big chunked dataset whose stored chunks can be copied as they are.

    Not for committed datatypes, references or variable-length data (the object copy
    handles those), nor for filters this HDF5 lacks.
    """
    if not isinstance(obj, h5py.Dataset) or obj.chunks is None or obj.is_virtual:
        return False
    if obj.id.get_storage_size() < CHUNKWISE_COPY_BYTES or obj.id.get_type().committed():
        return False
    dtype = _numpy_dtype(obj)
    if dtype is None or dtype.hasobject or has_refs(dtype):
        return False
    dcpl = obj.id.get_create_plist()
    filters = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
    return all(h5py.h5z.filter_avail(f) for f in filters) and _chunk_offsets(obj) is not None


def _chunk_offsets(dset: h5py.Dataset) -> Iterator[tuple[int, ...]] | None:
    """Offsets of the stored chunks of ``dset`` (None: too sparse to list them cheaply)."""
    stored = dset.id.get_num_chunks()
    assert dset.chunks is not None
    axes = [range(0, n, c) for n, c in zip(dset.shape, dset.chunks, strict=True)]
    if math.prod(len(a) for a in axes) <= 4 * stored + 4096:  # look each one up in the index
        grid = itertools.product(*axes)
        return (o for o in grid if dset.id.get_chunk_info_by_coord(o).byte_offset is not None)
    if stored <= 4096:  # HDF5 1.10 walks the index for each chunk by number
        return (tuple(dset.id.get_chunk_info(i).chunk_offset) for i in range(stored))
    return None


def _copy_chunks(src: h5py.Dataset, dst: h5py.Group, name: str, path: str) -> None:
    """Copy ``src`` with its creation properties and its stored chunks, bytes unchanged."""
    plist = src.id.get_create_plist()
    new = h5d.create(dst.id, name.encode(), src.id.get_type(), src.id.get_space(), dcpl=plist)
    offsets = _chunk_offsets(src)
    assert offsets is not None
    for offset in offsets:
        mask, data = src.id.read_direct_chunk(offset)
        new.write_direct_chunk(offset, data, mask)
        guard.beat(f"copying {path}")
        faults.inject("copy")


def _copy_link(src: h5py.Group, dst: h5py.Group, name: str, path: str, kind: int) -> None:
    if kind not in (h5l.TYPE_SOFT, h5l.TYPE_EXTERNAL):
        raise UsageError(
            f"{path} is a user-defined link (type {kind}), which h5par cannot copy; remove it or copy the file with h5repack"
        )
    dst[name] = src.get(name, getlink=True)


def _copy_external(src: h5py.Group, name: str, dst: h5py.Group) -> None:
    """Datasets stored in external raw files become ordinary contiguous datasets.

    The external files are named relative to the input (``${ORIGIN}``); an output written
    elsewhere could not find them.
    """
    dapl = h5p.create(h5p.DATASET_ACCESS)
    dapl.set_efile_prefix(b"${ORIGIN}")
    dset = h5py.Dataset(h5d.open(src.id, name.encode(), dapl=dapl))
    dst.create_dataset(name, data=dset[...], dtype=dset.dtype)


def has_refs(dtype: np.dtype[Any]) -> bool:
    """True if ``dtype`` holds object or region references anywhere (fields, vlen, arrays)."""
    if h5py.check_ref_dtype(dtype) is not None:
        return True
    base = h5py.check_vlen_dtype(dtype)
    if base is not None and base is not str and base is not bytes:
        return has_refs(np.dtype(base))
    if dtype.subdtype is not None:
        return has_refs(dtype.subdtype[0])
    return dtype.names is not None and any(has_refs(dtype.fields[n][0]) for n in dtype.names)  # type: ignore[index]


class _Remapper:
    """Maps references into ``src`` to references to the same paths in ``dst``."""

    def __init__(self, src: h5py.File, dst: h5py.File) -> None:
        self.src, self.dst = src, dst

    def __call__(self, ref: Any) -> Any:
        if not ref:
            return ref
        target = self.dst.get(self.src[ref].name)
        if target is None:  # left out of the output (output.unselected = "drop")
            return (
                h5py.RegionReference()
                if isinstance(ref, h5py.RegionReference)
                else h5py.Reference()
            )
        if isinstance(ref, h5py.RegionReference):
            space = h5r.get_region(ref, self.src.id)
            return h5r.create(target.id, b".", h5r.DATASET_REGION, space)
        return target.ref

    def array(self, data: np.ndarray) -> np.ndarray:
        """A copy of ``data`` with every reference inside remapped (nested types too)."""
        dtype = data.dtype
        if h5py.check_ref_dtype(dtype) is not None:
            out = np.empty(data.shape, dtype)
            for i, ref in np.ndenumerate(data):
                out[i] = self(ref)
            return out
        if dtype.names is not None:
            out = data.copy()
            for field in dtype.names:
                out[field] = self.array(data[field])
            return out
        base = h5py.check_vlen_dtype(dtype)
        if base is not None and base is not str and base is not bytes:
            out = np.empty(data.shape, dtype)
            for i, item in np.ndenumerate(data):
                out[i] = self.array(np.asarray(item, dtype=base))
            return out
        return data


def copy_attrs(
    src: h5py.HLObject,
    dst: h5py.HLObject,
    remap: _Remapper | None = None,
    skip: Collection[str] = (),
) -> None:
    """Copy every attribute (but those ``skip`` names) with its exact HDF5 type and dataspace.

    Fixed-size types are copied as raw bytes (no conversion can alter them: string padding,
    big-endian, opaque, bitfields...); references are remapped with ``remap``. A
    ``REFERENCE_LIST`` keeps only the entries of datasets that are in ``dst``.
    """
    for name in list(src.attrs):
        raw = name.encode() if isinstance(name, str) else name
        if h5a.exists(dst.id, raw) or name in skip:
            continue
        if name == "REFERENCE_LIST" and remap is not None:
            _copy_reference_list(src, dst, remap)
            continue
        attr = h5a.open(src.id, raw)
        space, ftype = attr.get_space(), attr.get_type()
        new = h5a.create(dst.id, raw, ftype, space)
        if space.get_simple_extent_type() == h5s.NULL or space.get_simple_extent_npoints() == 0:
            continue
        shape = space.shape if space.get_simple_extent_type() == h5s.SIMPLE else ()
        dtype = _numpy_dtype(attr)
        if dtype is not None and (
            has_refs(dtype) or h5py.check_vlen_dtype(dtype) is not None or dtype.hasobject
        ):
            # References need remapping and variable-length data numpy's help: convert.
            data = np.empty(shape, dtype)
            attr.read(data)
            new.write(data if remap is None else remap.array(data))
        else:  # everything else as raw bytes of its exact file type: no conversion at all
            data = np.empty(shape, np.dtype((np.void, ftype.get_size())))
            attr.read(data, mtype=ftype)
            new.write(data, mtype=ftype)


def _copy_reference_list(src: h5py.HLObject, dst: h5py.HLObject, remap: _Remapper) -> None:
    """A dimension scale's ``REFERENCE_LIST``, remapped, without the datasets left out."""
    attr = h5a.open(src.id, b"REFERENCE_LIST")
    data = np.empty(attr.shape, attr.dtype)
    attr.read(data)
    kept = np.array([e for e in remap.array(data.reshape(-1)) if e[0]], dtype=attr.dtype)
    if kept.size:  # in the input's own type
        new = h5a.create(dst.id, b"REFERENCE_LIST", attr.get_type(), h5s.create_simple(kept.shape))
        new.write(kept)


def _numpy_dtype(obj: Any) -> np.dtype[Any] | None:
    """The numpy dtype h5py gives an object or attribute, None when there is none (H5T_TIME)."""
    try:
        return obj.dtype
    except TypeError:
        return None


def _copy_reference_data(src: h5py.Dataset, dst: h5py.Dataset, remap: _Remapper) -> None:
    """Rewrite a copied dataset of references so that they point into the output."""
    if src.shape is None or src.size == 0:
        return
    dst[...] = remap.array(src[...])


def reattach_scales(dset: h5py.Dataset, kept: list[tuple[int, int]]) -> None:
    """Detach every dimension scale from ``dset``, then attach those of the ``kept`` axes.

    ``kept`` lists ``(new axis, old axis)`` pairs: axes that survive whole a change of shape
    (a selection, a reshape). The copied ``DIMENSION_LIST`` still describes the old axes;
    scales of dropped or resized axes would contradict the data (netCDF readers refuse a
    dimension of the wrong length), so they are detached, each scale's ``REFERENCE_LIST``
    included.
    """
    if "DIMENSION_LIST" not in dset.attrs:
        return
    file, me = dset.file, object_key(dset)
    old = [[file[ref] for ref in refs if ref] for refs in dset.attrs["DIMENSION_LIST"]]
    del dset.attrs["DIMENSION_LIST"]
    for scale in {object_key(s): s for axis in old for s in axis}.values():
        _forget(scale, me)
    for new, axis in kept:
        for scale in old[axis]:
            dset.dims[new].attach_scale(scale)


def _forget(scale: h5py.Dataset, dset: Key) -> None:
    """Remove ``dset``'s entries from ``scale``'s ``REFERENCE_LIST``."""
    if "REFERENCE_LIST" not in scale.attrs:
        return
    entries = scale.attrs["REFERENCE_LIST"]
    dtype = scale.attrs.get_id("REFERENCE_LIST").dtype
    left = np.array(
        [e for e in entries if e[0] and object_key(scale.file[e[0]]) != dset], dtype=dtype
    )
    del scale.attrs["REFERENCE_LIST"]
    if left.size:
        scale.attrs.create("REFERENCE_LIST", left, dtype=dtype)
