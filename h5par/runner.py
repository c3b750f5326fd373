"""Where files, ranks and kernels meet: ``apply`` a kernel chain to datasets.

1. *validate* (every rank, pure): kernels, options, paths.
2. *inspect* (rank 0 reads metadata, broadcasts a picklable :class:`~h5par.targets.Plan`).
3. *execute* (:mod:`h5par.execute`): the work folder and its journal, the collective data
   pass, the output renamed into place.

Each phase ends in an agreement on failure (``collective_errors``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
from h5py import h5z

from . import faults
from .comm import allgather, bcast, private, rank, resolve_comm, size
from .errors import H5ParError, UsageError, collective_errors
from .execute import execute
from .faults import inject
from .guard import DEFAULT_WATCHDOG, guarded
from .hierarchy import dataset_paths, has_refs, missing_sources, source_layout
from .io import DRIVERS, SERIAL_H5PY_FIX, open_input
from .kernels import Broadcast, Chain, Kernel
from .kernels.chain import convert_fill
from .layout import OutputOptions, dataset_options
from .selection import glob_regex, select_paths
from .sizes import format_size, parse_size
from .slicing import Selection, checked, parse, resolve
from .targets import STEP_FRACTION, Plan, Target, Work, step_itemsize

if TYPE_CHECKING:
    from mpi4py import MPI

__all__ = ["Result", "Target", "apply", "consolidate", "inspect"]


@dataclasses.dataclass(frozen=True)
class Result:
    """What a run did.

    Attributes
    ----------
    output : str or None
        The file written (the input for in-place runs; None when only reducing).
    datasets : list of str
        Processed dataset paths.
    reductions : dict
        ``{dataset path: {op: value}}`` of every ``reduce`` kernel.
    bytes_read, bytes_written : list of int
        Raw bytes each rank moved, by rank.
    seconds : float
        Wall time of the run on rank 0.
    busy_seconds : list of float
        Time each rank spent reading, transforming and writing (waits excluded).
    decomposition : dict
        ``{dataset path: [{"rank", "region", "steps", "bytes"}, ...]}``: what each rank did
        (the same structure :func:`h5par.targets.share` predicts).
    resumed_units : int
        Units an earlier, stopped run of the same job had finished (0: a fresh run).
    """

    output: str | None
    datasets: list[str]
    reductions: dict[str, dict[str, Any]]
    bytes_read: list[int]
    bytes_written: list[int]
    seconds: float
    busy_seconds: list[float] = dataclasses.field(default_factory=list)
    decomposition: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    resumed_units: int = 0


def apply(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    kernels: Iterable[Mapping[str, Any] | Kernel] = (),
    datasets: Sequence[str] | str | None = None,
    *,
    in_place: bool = False,
    overwrite: bool = False,
    memory: str | int = "256MiB",
    options: OutputOptions | None = None,
    comm: MPI.Comm | None = None,
    driver: str = "auto",
    provenance: Mapping[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
    respect_fill_value: bool = True,
    resume: bool = False,
    watchdog: float = DEFAULT_WATCHDOG,
    select: Mapping[str, str] | None = None,
    materialize: bool = False,
    **driver_options: Any,
) -> Result:
    """Apply a kernel chain to datasets of an HDF5 file. Collective over ``comm``.

    Parameters
    ----------
    input : path
        The HDF5 file to read.
    output : path, optional
        The file to write: a new file keeping the whole hierarchy, processed datasets
        replaced. It appears under its name only when complete. Omit it with ``in_place``,
        or when the chain only reduces.
    kernels : sequence of dict or Kernel
        The chain, e.g. ``[{"name": "clip", "min": 0}]``; empty copies the data.
    datasets : glob or list of globs, optional
        Datasets to process (``"/*/temperature"``); default: every dataset.
    in_place : bool
        Write results back into ``input`` (same dtype and shape only).
    overwrite : bool
        Replace an existing ``output`` (only once the new one is complete).
    memory : str or int
        Per-rank working-memory budget (``"256MiB"``).
    options : OutputOptions, optional
        Chunks, compression, shuffle, fletcher32, fill value of output datasets.
    comm : mpi4py.MPI.Comm, optional
        Ranks taking part (default ``COMM_WORLD``).
    driver : str
        Driver for reading the input (``"auto"``, ``"family"``, ``"core"``...).
    provenance : mapping of str to str, optional
        Attributes written on the output's root group (``h5par run`` records its version,
        the job and the time).
    progress : callable, optional
        Called on rank 0 with the bytes all ranks read in each step (for progress bars).
    respect_fill_value : bool
        Elements equal to a dataset's ``_FillValue`` attribute (CF/netCDF) pass through
        kernels unchanged (converted by ``astype``) and are left out of reductions.
    resume : bool
        Require continuing a stopped or killed run of the same job (a UsageError when there
        is none). Without it such a run is continued when there is one, and a new run
        starts otherwise.
    watchdog : float
        Seconds without progress after which a rank counts as blocked and the job is
        aborted with a message naming it (0: never).
    select : mapping of str to str, optional
        ``{dataset glob: selection}`` in numpy's index syntax (``"4:8:2"``, ``"0, ..., 0"``,
        ``"[1, 2, 7]"``): those datasets are read through the selection and the output
        dataset has the selected shape.
    materialize : bool
        Write the input's virtual datasets as ordinary datasets (what :func:`consolidate`
        does); otherwise untouched virtual datasets are copied as virtual datasets.
    **driver_options
        Options of that driver (``memb_size`` for family).

    Returns
    -------
    Result
        Identical on every rank.

    Raises
    ------
    UsageError
        Bad arguments (on every rank, before anything is opened for writing).
    CollectiveError
        A failure on any rank, raised on every rank.
    """
    comm = resolve_comm(comm)
    private(comm)  # before any file is opened: see h5par.comm.private
    faults.reset()
    start = time.perf_counter()
    with guarded(watchdog):
        with collective_errors(comm, "validate"):
            inject("validate")
            job = _validate(
                input, output, kernels, datasets, in_place, overwrite, memory, options, driver,
                driver_options, size(comm), dict(provenance or {}), progress, respect_fill_value,
            )  # fmt: skip
            job = dataclasses.replace(
                job,
                resume=resume,
                select=checked(select or {}, "select {!r}"),
                materialize=materialize,
            )
        with collective_errors(comm, "inspect"):
            inject("inspect")
            plan = _inspect(job) if rank(comm) == 0 else None
        plan = bcast(comm, plan)
        assert plan is not None
        reductions, record = execute(job, plan, comm)
    records = allgather(comm, record)
    return Result(
        output=None if job.destination is None else str(job.destination),
        datasets=[t.path for t in plan.targets],
        reductions=reductions,
        bytes_read=[r.read for r in records],
        bytes_written=[r.written for r in records],
        seconds=bcast(comm, time.perf_counter() - start),
        busy_seconds=[r.busy for r in records],
        decomposition={t.path: [r.shares[t.path] for r in records] for t in plan.targets},
        resumed_units=records[0].resumed,
    )


def consolidate(
    output: str | os.PathLike[str],
    into: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    memory: str | int = "256MiB",
    comm: MPI.Comm | None = None,
    progress: Callable[[int], None] | None = None,
    watchdog: float = DEFAULT_WATCHDOG,
) -> Result:
    """Turn a subfiled output into one ordinary file, in parallel. Collective over ``comm``.

    Every virtual dataset of ``output`` is read through its parts and written as an
    ordinary dataset of ``into`` (with the chunks and filters of its parts); the rest of
    the hierarchy is copied as in any run. The subfiled output is left as it is.
    """
    return apply(
        output, into, [], overwrite=overwrite, memory=memory, comm=comm, progress=progress,
        watchdog=watchdog, materialize=True,
    )  # fmt: skip


def inspect(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    kernels: Iterable[Mapping[str, Any] | Kernel] = (),
    datasets: Sequence[str] | str | None = None,
    *,
    in_place: bool = False,
    overwrite: bool = False,
    memory: str | int = "256MiB",
    options: OutputOptions | None = None,
    nranks: int = 1,
    driver: str = "auto",
    respect_fill_value: bool = True,
    select: Mapping[str, str] | None = None,
    **driver_options: Any,
) -> list[Target]:
    """Validate like :func:`apply` and list the datasets it would process (one process).

    Reads metadata only; with :func:`share` this is what ``h5par plan`` prints.
    """
    job = _validate(
        input, output, kernels, datasets, in_place, overwrite, memory, options, driver,
        driver_options, nranks, {}, None, respect_fill_value,
    )  # fmt: skip
    return _inspect(dataclasses.replace(job, select=checked(select or {}, "select {!r}"))).targets


def _selection(job: Work, dset: h5py.Dataset) -> Selection | None:
    """The selection of ``dset`` in ``job`` (the first matching glob), resolved, or None."""
    text = next((t for p, t in job.select.items() if glob_regex(p).fullmatch(dset.name)), None)
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


def _validate(
    input: Any,
    output: Any,
    kernels: Iterable[Mapping[str, Any] | Kernel],
    datasets: Sequence[str] | str | None,
    in_place: bool,
    overwrite: bool,
    memory: str | int,
    options: OutputOptions | None,
    driver: str,
    driver_options: dict[str, Any],
    nranks: int,
    provenance: dict[str, str],
    progress: Callable[[int], None] | None,
    respect_fill_value: bool,
) -> Work:
    try:
        budget = parse_size(memory)
    except ValueError as exc:
        raise UsageError(f"memory: {exc}") from None
    chain = Chain.from_specs(kernels)
    options = options or OutputOptions()
    if driver != "auto" and driver not in DRIVERS:
        raise UsageError(f"input driver = {driver!r} (valid: auto, {', '.join(DRIVERS)})")
    source = Path(input)
    if not source.is_file() and driver != "family":
        raise UsageError(f"input {str(source)!r} does not exist or is not a file")
    target = None if output is None else Path(output)
    if in_place and target is not None:
        raise UsageError("give either an output path or in_place = true, not both")
    if in_place and any(k.has_halo for k in chain.kernels):
        raise UsageError(
            "in-place runs cannot use kernels with neighbours (a block's halo would be read "
            "after its neighbour was overwritten); write an output file"
        )
    if in_place and options.subfiled:
        raise UsageError("output.layout = 'subfiled' needs an output file, not in_place")
    if in_place and options.changes_layout:
        raise UsageError(
            "in-place runs keep the layout: chunks/compression/shuffle/fletcher32/fillvalue need an output file"
        )
    if not in_place and target is None and not chain.reducers:
        raise UsageError(
            "nothing to write: give an output path, in_place = true, or a reduce kernel"
        )
    if target is not None:
        _check_output(source, target, overwrite)
    writes = in_place or target is not None
    if writes and nranks > 1 and not h5py.get_config().mpi and not options.subfiled:
        raise H5ParError(SERIAL_H5PY_FIX.format(n=nranks))
    if isinstance(datasets, str):
        datasets = [datasets]
    return Work(
        source,
        target,
        in_place,
        chain,
        None if datasets is None else list(datasets),
        budget,
        options,
        overwrite,
        driver,
        dict(driver_options),
        nranks,
        provenance,
        progress,
        respect_fill_value,
    )


def _check_output(source: Path, target: Path, overwrite: bool) -> None:
    if target.resolve() == source.resolve():
        raise UsageError(
            f"output {str(target)!r} is the input: use in_place = true to write into it"
        )
    if target.exists() and not overwrite:
        raise UsageError(
            f"output {str(target)!r} exists (set overwrite = true or pass --overwrite to replace it)"
        )
    folder = target.parent
    if not folder.is_dir():
        raise UsageError(f"output folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):  # root too: read-only mounts, immutable folders
        why = (
            "a read-only file system"
            if os.statvfs(folder).f_flag & os.ST_RDONLY
            else "no permission to create files in it"
        )
        raise UsageError(f"output folder {str(folder)!r} is not writable ({why})")


def _inspect(job: Work) -> Plan:
    try:
        with open_input(
            job.input, job.driver, job.driver_options
        ) as src:  # its errors name the file
            try:
                paths = select_paths(dataset_paths(src), job.patterns)
                found = (_named(p, _target, job, src) for p in paths)
                targets = [t for t in found if t is not None]
                _check_select(job, targets)
                processed = {t.path for t in targets}
                others = [p for p in dataset_paths(src) if p not in processed]
                copies = [_named(p, _parallel_copy, job, src) for p in others]
            except UsageError as exc:  # name the file: a job may have hundreds
                raise UsageError(f"{str(job.input)!r}: {exc}") from None
            order = bool(src.id.get_create_plist().get_link_creation_order())
            stat = os.stat(job.input) if job.input.is_file() else None
            identity = {} if stat is None else {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
            kept = [c for c in copies if c is not None]
            return Plan(targets, src.userblock_size, order, kept, identity)
    except H5ParError:
        raise
    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
        # HDF5 refused the file's structure (corrupt, unknown messages...): an input problem.
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # KeyError quotes
        raise UsageError(
            f"cannot read {str(job.input)!r}, the file may be corrupt: {text}"
        ) from None


def _check_select(job: Work, targets: list[Target]) -> None:
    for pattern in job.select:
        if not any(glob_regex(pattern).fullmatch(t.path) for t in targets):
            names = ", ".join(t.path for t in targets) or "none"
            raise UsageError(
                f"select {pattern!r} matches no processed dataset (processed: {names})"
            )


#: Untouched datasets at least this large are copied by all ranks (smaller: HDF5's object copy).
PARALLEL_COPY_BYTES = 64 * 2**20
#: Filters an identity copy can re-apply exactly (deflate, shuffle, fletcher32).
_LOSSLESS_FILTERS = frozenset({h5z.FILTER_DEFLATE, h5z.FILTER_SHUFFLE, h5z.FILTER_FLETCHER32})


def _parallel_copy(job: Work, dset: h5py.Dataset) -> Target | None:
    """An untouched large dataset copied slab by slab by every rank, or None (object copy)."""
    if job.output is None or dset.shape is None or dset.external or dset.is_virtual:
        return None
    try:
        dtype = dset.dtype
    except TypeError:  # no numpy equivalent (e.g. H5T_TIME): HDF5's object copy handles it
        return None
    if dset.size * dtype.itemsize < PARALLEL_COPY_BYTES or dtype.hasobject or has_refs(dtype):
        return None
    if dtype.itemsize > job.budget // STEP_FRACTION or not _fully_allocated(dset):
        return None  # huge elements; sparse datasets (the object copy keeps holes unallocated)
    dcpl = dset.id.get_create_plist()
    if any(dcpl.get_filter(i)[0] not in _LOSSLESS_FILTERS for i in range(dcpl.get_nfilters())):
        return None
    layout = source_layout(dset)
    shape = tuple(dset.shape)
    create = dataset_options(layout, shape, shape, dtype, OutputOptions(), False)
    return Target(dset.name, shape, dtype, shape, dtype, layout.chunks, create, copy=True)


def _named(path: str, plan: Any, job: Work, src: h5py.File) -> Target | None:
    """``plan(job, src[path])``, with HDF5's refusals turned into errors naming the dataset."""
    try:
        result: Target | None = plan(job, src[path])
    except UsageError:
        raise
    except (OSError, KeyError, RuntimeError, TypeError, ValueError) as exc:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # KeyError quotes
        raise UsageError(f"cannot read dataset {path}, the file may be corrupt: {text}") from None
    return result


def _fully_allocated(dset: h5py.Dataset) -> bool:
    """True when every chunk (or the contiguous block) of ``dset`` exists in the file."""
    if dset.chunks is None:
        return bool(dset.id.get_storage_size() > 0)
    grid = math.prod(-(-n // c) for n, c in zip(dset.shape, dset.chunks, strict=True))
    return bool(dset.id.get_num_chunks() == grid)


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
    lost = missing_sources(dset) if dset.is_virtual else []
    if lost:
        raise UsageError(
            f"virtual dataset {dset.name}: source file {lost[0]!r} is missing (HDF5 would read "
            "fill values in its place); for a subfiled output, keep its .parts folder next to it"
        )
    try:
        _check_packed(job, dset)
        fill = _fill_value(dset) if job.respect_fill_value else None
        out_dtype, out_shape = job.chain.check(dtype, shape, fill)
    except UsageError as exc:
        raise UsageError(f"dataset {dset.name} ({dtype}, shape {shape}): {exc}") from None
    if job.chain:
        out_dtype = out_dtype.newbyteorder("=")
    if job.in_place and (out_dtype != dtype or out_shape != shape):
        raise UsageError(
            f"dataset {dset.name}: in-place runs cannot change dtype or shape ({dtype}{list(shape)} → {out_dtype}{list(out_shape)}); write an output file"
        )
    if h5py.check_vlen_dtype(dtype) is not None or dtype.hasobject:
        raise UsageError(
            f"dataset {dset.name}: variable-length data ({dtype}) cannot be written in parallel; unselect it (it is copied unchanged)"
        )
    # The data pass holds one element per step in 1/STEP_FRACTION of the budget, and a
    # broadcast's source slice in half of it: refuse smaller budgets before writing anything.
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
    if fill is not None and any(k.has_halo for k in job.chain.kernels):
        raise UsageError(
            f"dataset {dset.name} has missing values (_FillValue = {fill}) and kernels with "
            "neighbours would mix them into their neighbours' results; set "
            "run.respect_fill_value = false (and replace them with a 'fill' kernel first)"
        )
    reducer = job.chain.axis_reducer
    axes = () if reducer is None else reducer.reduced_axes(len(shape))
    layout = source_layout(dset)
    try:
        create = dataset_options(
            layout, tuple(dset.shape), out_shape, out_dtype, job.options, out_dtype != dtype
        )
    except UsageError as exc:
        raise UsageError(f"dataset {dset.name} ({dtype}, shape {shape}): {exc}") from None
    lzf = create.get("compression") == "lzf" or (job.in_place and layout.compression == "lzf")
    if lzf and job.nranks > 1 and not job.options.subfiled:
        # Measured here: HDF5 1.10's collective filtered writes corrupt h5py's LZF chunks.
        raise UsageError(
            f"dataset {dset.name}: LZF output cannot be written by {job.nranks} ranks (HDF5's "
            "parallel filtered writes corrupt LZF chunks); set compression = 'gzip' or 'none', "
            "layout = 'subfiled', or run on one rank"
        )
    align = create.get("chunks") if out_shape == shape or axes else layout.chunks
    if job.in_place:
        align = layout.chunks
    elif select is not None and out_shape != shape and not axes:
        align = None  # the input's chunks say nothing about a selection's result
    out_fill = None if fill is None else convert_fill(fill, out_dtype)
    return Target(
        dset.name, shape, dtype, out_shape, out_dtype, align, create, fill, out_fill, select=select,
        axes=axes, virtual=dset.is_virtual,
    )  # fmt: skip


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


def _fill_value(dset: h5py.Dataset) -> Any:
    """The dataset's ``_FillValue`` attribute (CF/netCDF) as a scalar, or None."""
    if "_FillValue" not in dset.attrs or dset.dtype.kind not in "biuf":
        return None
    value = np.asarray(dset.attrs["_FillValue"])
    if value.size != 1 or value.dtype.kind not in "biuf":
        return None
    return value.reshape(())[()]
