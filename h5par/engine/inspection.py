"""Inspecting an input (rank 0, metadata only): which datasets a run processes, and how.

Each selected dataset becomes a :class:`~h5par.core.units.Target` (shapes and dtypes through
the kernel chain, its selection, output layout, fill values, reduced axes); large untouched
datasets become copies made by every rank. Bad inputs and impossible requests are
:class:`~h5par.errors.UsageError` naming the dataset, before anything is written.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import h5py
import numpy as np
from h5py import h5t, h5z

from h5par.core.attributes import Edit
from h5par.core.dimensions import Dimension
from h5par.core.globs import matches, on_paths, select_paths
from h5par.core.layout import OutputOptions, SourceLayout, dataset_options
from h5par.core.sizes import format_size
from h5par.core.slicing import Selection, parse, resolve
from h5par.core.units import Target
from h5par.engine.config import Work
from h5par.engine.derived import derived_targets
from h5par.engine.journal import DamagedJournalError, Journal, stat_identity, work_folder_of
from h5par.engine.plan import STEP_FRACTION, Plan, step_itemsize
from h5par.engine.series import label
from h5par.errors import H5ParError, UsageError
from h5par.hdf5.allocation import chunk_count
from h5par.hdf5.attributes import fill_attribute, planned_edits
from h5par.hdf5.dimensions import attached, plan_dimensions
from h5par.hdf5.hierarchy import (
    dataset_attributes,
    dataset_paths,
    filtered_chunks,
    has_refs,
    is_scale,
    kept_type,
    missing_sources,
    source_layout,
)
from h5par.hdf5.io import memory_type, open_dataset, open_input
from h5par.kernels import Broadcast
from h5par.kernels.chain import convert_fill
from h5par.parallel import guard

__all__ = ["PARALLEL_COPY_BYTES", "Share", "inspect_input", "inspect_share"]

_T = TypeVar("_T")


def _selection(job: Work, dset: h5py.Dataset) -> Selection | None:
    """The selection of ``dset`` in ``job`` (the first matching glob), resolved, or None."""
    text = next((t for p, t in job.select.items() if matches(p, dset.name)), None)
    if text is None:
        return None
    if job.in_place:
        raise UsageError(
            f"dataset {dset.name}: in-place runs cannot apply a selection ({text!r}); write an "
            "output file"
        )
    try:
        return resolve(parse(text), tuple(dset.shape or ()), text)
    except UsageError as exc:
        raise UsageError(f"dataset {dset.name} (shape {dset.shape}): {exc}") from None


#: A rank's share of a file's inspection: the input's identity when read, its (position,
#: target) pairs, and its first problem, (position, message), if any.
Share = tuple[dict[str, int], list[tuple[int, Target]], tuple[int, str] | None]


def inspect_share(job: Work, index: int, count: int) -> Share:
    """The targets of every ``count``-th selected dataset from the ``index``-th (a rank's share).

    The ranks sharing a file inspect its datasets together; :func:`inspect_input` takes
    their shares (``shares``) instead of planning each dataset itself, and raises the
    problem of the first dataset in the file's order, whatever the number of ranks.
    """
    source = stat_identity(job.input)  # before reading: what the share was made of
    found: list[tuple[int, Target]] = []
    problems: list[str] = []
    note = _Problems(job, problems)
    with _opened(job) as src:
        paths = _selected_paths(job, src, dataset_attributes(src), _Problems(job, None))
        for i in range(index, len(paths), count):
            target = note.check(_named, paths[i], _target, job, src)
            if problems:
                return source, found, (i, problems[0])
            if target is not None:
                found.append((i, target))
    return source, found, None


def inspect_input(
    job: Work, problems: list[str] | None = None, shares: list[Share] | None = None
) -> Plan:
    """What rank 0 finds in the input: the datasets to process and to copy (metadata only).

    The first problem found is raised as a :class:`UsageError`; with a ``problems`` list,
    each dataset's and each pattern's problem is appended to it instead (one line each,
    naming the file) and inspection goes on without that dataset (``h5par plan``).
    ``shares``: every dataset's target, from :func:`inspect_share` on each rank.
    """
    source = stat_identity(job.input)  # before reading: what the plan was made of
    if shares is not None:
        _check_shares(job, source, shares)
    with _opened(job) as src:
        note = _Problems(job, problems)
        listing = dataset_attributes(src)
        paths = _selected_paths(job, src, listing, note)
        if shares is None:
            targets, failed = _targets(paths, note, job, src)
        else:
            found = sorted((p for _, part, _ in shares for p in part), key=lambda p: p[0])
            targets, failed = [t for _, t in found], []
        processed = [t.path for t in targets] + failed  # a failed one is not "unmatched"
        for pattern in job.select:
            note.check(_check_select, job, pattern, processed, src)
        derived, made = note.check(_derived, job, src, targets) or ([], [])
        dims, keep = note.check(_dimensions, job, src, targets, paths) or ([], None)
        if keep is not None:  # a dropping output keeps the coordinates of derived datasets
            keep += [s for t in derived for s in _like_scales(src, t) if s not in keep]
        seen = set(processed)
        others = [p for p in listing if p not in seen]
        if keep is not None:
            wanted = set(keep)
            others = [p for p in others if p in wanted]
        copies = [note.check(_named, p, _parallel_copy, job, src) for p in others]
        order = bool(src.id.get_create_plist().get_link_creation_order())
        kept = [c for c in copies if c is not None]
        edits = note.check(_edits, job, src, targets, keep, derived) or []
        edits += made
        return Plan(targets, src.userblock_size, order, kept, source, dims, keep, edits, derived)


def _check_shares(job: Work, source: dict[str, int], shares: list[Share]) -> None:
    """Raise the first dataset's problem the ranks found, or a change of the input meanwhile."""
    first = min((problem for *_, problem in shares if problem is not None), default=None)
    if first is not None:
        raise UsageError(first[1])
    if any(seen != source for seen, *_ in shares):
        raise UsageError(
            f"{str(job.input)!r} changed while it was checked (size, times or inode "
            "differ between the ranks' reads): rerun once nothing writes it"
        )


@contextlib.contextmanager
def _opened(job: Work) -> Iterator[h5py.File]:
    """The input, open for inspection; HDF5's refusals of its structure are input problems."""
    try:
        with open_input(job.input, job.driver, job.driver_options) as src:  # names the file
            yield src
    except H5ParError:
        raise
    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
        # HDF5 refused the file's structure (corrupt, unknown messages...): an input problem.
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # KeyError quotes
        raise UsageError(
            f"cannot read {str(job.input)!r}, the file may be corrupt: {text}"
        ) from exc


def _edits(
    job: Work, src: h5py.File, targets: list[Target], keep: list[str] | None, new: list[Target]
) -> list[tuple[Edit, Any]]:
    """The job's attribute edits, checked against the input and typed for the output.

    ``new`` are the derived datasets: their own ``attrs`` set theirs, the groups above
    them (new ones too) may take edits.
    """
    named = next((e.path for e in job.attrs.edits() for t in new if e.path == t.path), None)
    if named is not None:
        raise UsageError(
            f'output.attrs: "{named}" is a derived dataset (valid: set its attributes in its '
            "[[derived]] table's attrs)"
        )
    dtypes = {t.path: t.out_dtype for t in targets}
    made = {t.path for t in new}
    groups = {p for p in on_paths(made) - made if p not in src}  # new groups above them
    # A dropping output holds these datasets and the groups above them.
    written = None if keep is None else {"/", *on_paths({*keep, *dtypes, *made})}
    return planned_edits(
        src, job.attrs, dtypes, kept=lambda p: written is None or p in written, groups=groups,
        resuming=job.in_place and _partly_updated(job),
    )  # fmt: skip


def _partly_updated(job: Work) -> bool:
    """True when an unfinished in-place run of a job left the input partly updated."""
    try:
        journal = Journal.load(work_folder_of(job.input, True))
    except DamagedJournalError:
        return False
    return journal is not None and journal.changed


def _derived(
    job: Work, src: h5py.File, targets: list[Target]
) -> tuple[list[Target], list[tuple[Edit, Any]]]:
    """The job's derived datasets and their attributes (paths new to the output)."""
    if not job.derived:
        return [], []
    taken = {t.path for t in targets}
    return derived_targets(job.derived, src, job.options, job.respect_fill_value, taken)


def _like_scales(src: h5py.File, target: Target) -> list[str]:
    """The dimension scales a derived dataset takes from the input of its shape."""
    return [] if target.like is None else [s for axis in attached(src[target.like]) for s in axis]


def _dimensions(
    job: Work, src: h5py.File, targets: list[Target], paths: list[str]
) -> tuple[list[Dimension], list[str] | None]:
    """The scales a selection's output needs, and what a drop output keeps (None: all).

    A scale the job processes cannot also be selected for another dataset's axis: its
    selected copy would hold the input's values beside the processed ones.
    """
    if job.output is None:
        return [], None
    dims, keep = plan_dimensions(src, targets, paths if job.options.drop else None)
    processed = {t.path for t in targets}
    clash = next((d for d in dims if d.scale in processed), None)
    if clash is not None:
        raise UsageError(
            f"dataset {clash.users[0][0]}: its selection cuts the dimension of {clash.scale}, "
            f"which the job also processes; leave {clash.scale} out of input.datasets (it is "
            "then selected with the datasets that use it)"
        )
    return dims, keep


def _targets(
    paths: list[str], note: _Problems, job: Work, src: h5py.File
) -> tuple[list[Target], list[str]]:
    """The targets of ``paths``, and the paths whose problems ``note`` noted."""
    targets, failed = [], []
    for path in paths:
        noted = note.count
        target = note.check(_named, path, _target, job, src)
        if target is not None:
            targets.append(target)
        elif note.count > noted:
            failed.append(path)
    return targets, failed


class _Problems:
    """Raise a problem naming the file, or (with a list) note it and go on."""

    def __init__(self, job: Work, problems: list[str] | None) -> None:
        self.name = str(job.input) if job.series is None else label(job.series)
        self.problems = problems

    @property
    def count(self) -> int:
        """How many problems were noted (0 when they are raised)."""
        return 0 if self.problems is None else len(self.problems)

    def check(self, call: Callable[..., _T], *args: Any) -> _T | None:
        """``call(*args)``; None when it raised a UsageError that was noted."""
        try:
            return call(*args)
        except UsageError as exc:  # name the file: a job may have hundreds
            if self.problems is None:
                raise UsageError(f"{self.name!r}: {exc}") from exc
            self.problems.append(f"{self.name!r}: {exc}")
            return None


def _selected_paths(
    job: Work, src: h5py.File, listing: dict[str, int], note: _Problems
) -> list[str]:
    """The datasets ``job`` processes: those its patterns match, else every non-scale one.

    ``listing`` is :func:`~h5par.hdf5.hierarchy.dataset_attributes` of ``src``. In a
    series' joined file, the datasets joined (virtual ones): what is not joined is copied
    from the first file, as NCO does.

    Dimension scales (``CLASS = "DIMENSION_SCALE"``: netCDF-4 coordinate variables such as
    ``/time`` and dimension placeholders) are coordinates, not data: without patterns they
    are copied untouched, and processed only when a pattern of ``input.datasets`` matches
    them (their attached datasets stay attached).
    """
    paths = list(listing)
    if job.patterns is None:  # a scale has attributes (its CLASS): others need no opening
        data = [p for p, n in listing.items() if not (n and is_scale(src, p))]
        return [p for p in data if src[p].is_virtual] if job.series else data
    chosen = {
        p for pattern in job.patterns for p in note.check(select_paths, paths, [pattern]) or ()
    }
    return [p for p in paths if p in chosen]


def _check_select(job: Work, pattern: str, processed: list[str], src: h5py.File) -> None:
    """Refuse a selection ``pattern`` that matches none of the ``processed`` paths."""
    if not any(matches(pattern, p) for p in processed):
        names = ", ".join(processed) or "none"
        hint = ""
        if job.patterns is None and any(
            matches(pattern, p) and is_scale(src, p) for p in dataset_paths(src)
        ):
            hint = "; dimension scales are processed only when input.datasets names them"
        raise UsageError(
            f"select {pattern!r} matches no processed dataset (processed: {names}){hint}"
        )


#: Untouched datasets at least this large are copied by all ranks (smaller: HDF5's object copy).
PARALLEL_COPY_BYTES = 64 * 2**20
#: Filters an identity copy can re-apply exactly (deflate, shuffle, fletcher32).
_LOSSLESS_FILTERS = frozenset({h5z.FILTER_DEFLATE, h5z.FILTER_SHUFFLE, h5z.FILTER_FLETCHER32})


def _parallel_copy(job: Work, dset: h5py.Dataset) -> Target | None:
    """An untouched large dataset copied slab by slab by every rank, or None (object copy)."""
    joined = job.materialize and dset.is_virtual  # its data is read through it, at any size
    if job.output is None or dset.shape is None or dset.external or dset.is_virtual != joined:
        return None
    try:
        dtype = dset.dtype
    except TypeError:  # no numpy equivalent (e.g. H5T_TIME): HDF5's object copy handles it
        return None
    small = dset.size * dtype.itemsize < PARALLEL_COPY_BYTES and not joined
    if small or dtype.hasobject or has_refs(dtype):
        return None
    if dtype.subdtype is not None:  # h5py reads such blocks with the subarray's axes added
        return None
    if dtype.itemsize > job.budget // STEP_FRACTION:
        return None  # huge elements
    if not joined and not _fully_allocated(dset):
        return None  # sparse datasets (the object copy keeps holes unallocated)
    dcpl = dset.id.get_create_plist()
    if any(dcpl.get_filter(i)[0] not in _LOSSLESS_FILTERS for i in range(dcpl.get_nfilters())):
        return None
    layout = source_layout(dset)
    shape = tuple(dset.shape)
    create = dataset_options(layout, shape, shape, dtype, OutputOptions(), False)
    create.update(kept_type(dset, dtype))
    return Target(
        dset.name, shape, dtype, shape, dtype, layout.chunks, create, copy=True, virtual=joined
    )


def _named(path: str, plan: Any, job: Work, src: h5py.File) -> Target | None:
    """``plan(job, src[path])``, with HDF5's refusals turned into errors naming the dataset.

    Each dataset inspected is progress for the watchdog (a file may hold thousands).
    """
    guard.beat(f"inspecting {path}")
    try:
        result: Target | None = plan(job, open_dataset(src, path, None))
    except UsageError:
        raise
    except (OSError, KeyError, RuntimeError, TypeError, ValueError) as exc:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # KeyError quotes
        raise UsageError(f"cannot read dataset {path}, the file may be corrupt: {text}") from exc
    return result


def _fully_allocated(dset: h5py.Dataset) -> bool:
    """True when every chunk (or the contiguous block) of ``dset`` exists in the file."""
    if dset.chunks is None:
        return bool(dset.id.get_storage_size() > 0)
    return bool(dset.id.get_num_chunks() == chunk_count(dset))


def _target(job: Work, dset: h5py.Dataset) -> Target | None:
    """Plan one selected dataset, or None when it is only copied.

    Copied as they are: datasets without elements to process (null dataspace) and, when
    writing a new file, datasets with no kernel and no layout change.
    """
    select = None if dset.shape is None else _selection(job, dset)
    copy_only = not job.chain and not job.options.changes_layout and job.output is not None
    copy_only = copy_only and not (job.materialize and dset.is_virtual)
    if (copy_only and select is None) or dset.shape is None:
        return None
    shape, dtype = tuple(dset.shape) if select is None else select.shape, dset.dtype
    _check_sources(dset)
    fill, out_dtype, out_shape = _through_chain(job, dset, dtype, shape)
    _check_writable(job, dset, (dtype, shape), (out_dtype, out_shape))
    _check_budget(job, dset, dtype, out_dtype, shape)
    reducer = job.chain.axis_reducer
    axes = () if reducer is None else reducer.reduced_axes(len(shape))
    layout = source_layout(dset)
    create = _create(job, dset, layout, (dtype, shape), (out_dtype, out_shape))
    align = create.get("chunks") if out_shape == shape or axes else layout.chunks
    if job.in_place:
        align = layout.chunks
    elif select is not None and out_shape != shape and not axes:
        align = None  # the input's chunks say nothing about a selection's result
    out_fill = None if fill is None else convert_fill(fill, out_dtype)
    stored = _filtered(dset, layout)
    return Target(
        dset.name, shape, dtype, out_shape, out_dtype, align, create, fill, out_fill, select=select,
        axes=axes, virtual=dset.is_virtual, stored=stored,
        direct=layout.chunks is not None and stored is None,
    )  # fmt: skip


def _filtered(dset: h5py.Dataset, layout: SourceLayout) -> tuple[int, ...] | None:
    """The chunks of ``dset`` when stored through filters, else None.

    A virtual dataset's are its first source's, fitted to it (``layout``).
    """
    if not dset.is_virtual:
        return filtered_chunks(dset)
    filters = layout.compression or layout.shuffle or layout.fletcher32 or layout.scaleoffset
    return layout.chunks if filters else None


def _check_sources(dset: h5py.Dataset) -> None:
    """Refuse a virtual dataset whose source files are missing."""
    lost = missing_sources(dset) if dset.is_virtual else []
    if lost:
        raise UsageError(
            f"virtual dataset {dset.name}: source file {lost[0]!r} is missing (HDF5 would read "
            "fill values in its place); for a subfiled output, keep its .parts folder next to it"
        )


def _through_chain(
    job: Work, dset: h5py.Dataset, dtype: np.dtype[Any], shape: tuple[int, ...]
) -> tuple[Any, np.dtype[Any], tuple[int, ...]]:
    """The fill value respected, and the dtype and shape the chain makes of the dataset."""
    try:
        _check_packed(job, dset)
        fill = fill_attribute(dset) if job.respect_fill_value else None
        out_dtype, out_shape = job.chain.check(dtype, shape, fill)
    except UsageError as exc:
        raise UsageError(f"dataset {dset.name} ({dtype}, shape {shape}): {exc}") from exc
    if job.chain:
        out_dtype = out_dtype.newbyteorder("=")
    if job.in_place and out_dtype.newbyteorder("=") == dtype.newbyteorder("="):
        out_dtype = dtype  # written back in the file's own byte order
    if fill is not None and any(k.has_halo for k in job.chain.kernels):
        raise UsageError(
            f"dataset {dset.name} has missing values (_FillValue = {fill}) and kernels with "
            "neighbours would mix them into their neighbours' results; set "
            "run.respect_fill_value = false (and replace them with a 'fill' kernel first)"
        )
    return fill, out_dtype, out_shape


_Form = tuple[np.dtype[Any], tuple[int, ...]]  # a dtype and a shape


def _check_writable(job: Work, dset: h5py.Dataset, given: _Form, made: _Form) -> None:
    """What cannot be written: in-place changes, virtual datasets in place, opaque, vlen."""
    (dtype, shape), (out_dtype, out_shape) = given, made
    if job.in_place and (out_dtype != dtype or out_shape != shape):
        raise UsageError(
            f"dataset {dset.name}: in-place runs cannot change dtype or shape ({dtype}{list(shape)} → {out_dtype}{list(out_shape)}); write an output file"
        )
    if job.in_place and dset.is_virtual and job.nranks > 1:
        raise UsageError(
            f"dataset {dset.name} is virtual (its data lives in other files, e.g. a subfiled "
            f"output's parts): {job.nranks} ranks cannot update it in place (HDF5 cannot "
            "write virtual datasets through MPI-IO); run on one rank, consolidate the file "
            "first (h5par consolidate), or write an output file"
        )
    _check_opaque(dset)
    if h5py.check_vlen_dtype(dtype) is not None or dtype.hasobject:
        raise UsageError(
            f"dataset {dset.name}: variable-length data ({dtype}) cannot be written in parallel; unselect it (it is copied unchanged)"
        )


def _check_budget(
    job: Work,
    dset: h5py.Dataset,
    dtype: np.dtype[Any],
    out_dtype: np.dtype[Any],
    shape: tuple[int, ...],
) -> None:
    """Refuse budgets the data pass cannot work in, before anything is written.

    A step holds one element in 1/STEP_FRACTION of the budget, and a broadcast's source
    slice in half of it.
    """
    itemsize = step_itemsize(dtype, out_dtype, job.chain)
    if itemsize > job.budget // STEP_FRACTION:
        raise UsageError(
            f"memory = {format_size(job.budget)} is too small for dataset {dset.name}: a step "
            f"holds at least one element ({itemsize} bytes) in 1/{STEP_FRACTION} of the budget "
            f"(valid: at least {format_size(itemsize * STEP_FRACTION)})"
        )
    for position, kernel in enumerate(job.chain.kernels):
        if isinstance(kernel, Broadcast) and shape:
            source = tuple(s.stop - s.start for s in kernel.source_index(shape))
            nbytes = math.prod(source) * job.chain.dtype_at(position, dtype).itemsize
            if nbytes > job.budget // 2:
                raise UsageError(
                    f"memory = {format_size(job.budget)} is too small for broadcast on dataset "
                    f"{dset.name}: its source slice {source} ({format_size(nbytes)}) is kept in "
                    f"half of the budget (valid: at least {format_size(2 * nbytes)})"
                )


def _create(
    job: Work, dset: h5py.Dataset, layout: SourceLayout, given: _Form, made: _Form
) -> dict[str, Any]:
    """The output dataset's creation arguments (chunks, filters, fill value, HDF5 type)."""
    (dtype, shape), (out_dtype, out_shape) = given, made
    try:
        create = dataset_options(
            layout, tuple(dset.shape), out_shape, out_dtype, job.options, out_dtype != dtype
        )
    except UsageError as exc:
        raise UsageError(f"dataset {dset.name} ({dtype}, shape {shape}): {exc}") from exc
    create.update(kept_type(dset, out_dtype))
    lzf = create.get("compression") == "lzf" or (job.in_place and layout.compression == "lzf")
    if lzf and job.nranks > 1 and not job.options.subfiled:
        # Measured here: HDF5 1.10's collective filtered writes corrupt h5py's LZF chunks.
        raise UsageError(
            f"dataset {dset.name}: LZF output cannot be written by {job.nranks} ranks (HDF5's "
            "parallel filtered writes corrupt LZF chunks); set compression = 'gzip' or 'none', "
            "layout = 'subfiled', or run on one rank"
        )
    return create


def _check_opaque(dset: h5py.Dataset) -> None:
    """Refuse a tagged opaque dataset (it is copied unchanged when not selected).

    numpy sees raw bytes, and HDF5 converts only between opaque types of the same tag: with
    a tag other than h5py's, blocks move only in the dataset's own type
    (:func:`h5par.hdf5.io.memory_type`), which needs numpy's dtype to hold its bytes exactly.
    """
    ftype = dset.id.get_type()
    opaque = _opaque_part(ftype)
    convertible = memory_type(dset) is not None or h5t.find(ftype, h5t.py_create(dset.dtype))
    if opaque is not None and not convertible:
        tag = opaque.get_tag().decode(errors="replace")
        raise UsageError(
            f"dataset {dset.name} has an opaque type (tag {tag!r}): "
            "h5par cannot process it; unselect it (input.datasets), and it is copied unchanged"
        )


def _opaque_part(ftype: Any) -> Any:
    """The opaque type in ``ftype`` (itself, a compound member, an array's base), or None."""
    kind = ftype.get_class()
    if kind == h5t.OPAQUE:
        return ftype
    if kind == h5t.COMPOUND:
        members = (_opaque_part(ftype.get_member_type(i)) for i in range(ftype.get_nmembers()))
        return next((m for m in members if m is not None), None)
    return _opaque_part(ftype.get_super()) if kind == h5t.ARRAY else None


def _check_packed(job: Work, dset: h5py.Dataset) -> None:
    """Refuse to mix packed and unpacked values (CF ``scale_factor``/``add_offset``).

    Kernels see the stored (packed) numbers. ``scale`` would unpack them while the attributes
    still tell every netCDF reader to unpack again.
    """
    packing = [a for a in ("scale_factor", "add_offset") if a in dset.attrs]
    if packing and any(k.name == "scale" for k in job.chain.kernels):
        raise UsageError(
            f"dataset {dset.name} is packed ({', '.join(packing)} attributes): a 'scale' kernel "
            "would unpack values that readers unpack again; process the packed values "
            "(thresholds in packed units) or repack the file first"
        )
