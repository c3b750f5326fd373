"""Where files, ranks, decomposition and kernels meet: ``apply`` a kernel chain to datasets.

Phases, each ending in an agreement on failure (``collective_errors``):

1. *validate* (every rank, pure): kernels, options, paths.
2. *inspect* (rank 0 reads metadata, broadcasts a picklable plan).
3. *create* (rank 0 alone builds the output's structure under a temporary name: groups,
   attributes, links, untouched datasets copied, processed datasets created empty).
4. *data* (every rank): each processed dataset is split into chunk-aligned slabs along
   axis 0, every rank walks its slab in memory-bounded steps; reads and writes are
   collective (ranks with fewer steps make empty calls).
5. *finalize* (rank 0): userblock bytes, then the temporary file is renamed into place.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
from h5py import h5z

from .comm import allgather, bcast, bcast_array, rank, resolve_comm, size
from .decomposition import Index, flat_range, flat_range_boxes, index_shape, slab, steps
from .errors import H5ParError, UsageError, collective_errors
from .hierarchy import build_output, dataset_paths, has_refs, source_layout
from .io import SERIAL_H5PY_FIX, File, read_block, transfer_plist, write_block
from .kernels import Broadcast, Chain, Kernel, KernelError, Partial, Reduce, combine_all
from .kernels.chain import convert_fill
from .layout import OutputOptions, dataset_options
from .selection import select_paths
from .sizes import format_size, parse_size

if TYPE_CHECKING:
    from mpi4py import MPI

__all__ = ["Result", "Target", "apply", "inspect", "rank_steps", "share"]

#: A step holds at most memory / STEP_FRACTION bytes of one array: input block, output
#: block and kernel temporaries must fit the per-rank budget together.
STEP_FRACTION = 4


@dataclasses.dataclass(frozen=True)
class Target:
    """One dataset to process (picklable: broadcast from rank 0)."""

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    out_shape: tuple[int, ...]
    out_dtype: np.dtype[Any]
    align: tuple[int, ...] | None
    create: dict[str, Any]
    fill: Any = None  # the _FillValue attribute when missing values are respected
    out_fill: Any = None  # that value converted to out_dtype (written as the output's _FillValue)
    copy: bool = False  # an untouched dataset copied in parallel (no kernels)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What rank 0 found in the input."""

    targets: list[Target]
    userblock: int
    track_order: bool
    copies: list[Target] = dataclasses.field(default_factory=list)


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
        (the same structure :func:`describe` predicts).
    """

    output: str | None
    datasets: list[str]
    reductions: dict[str, dict[str, Any]]
    bytes_read: list[int]
    bytes_written: list[int]
    seconds: float
    busy_seconds: list[float] = dataclasses.field(default_factory=list)
    decomposition: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class _Job:
    input: Path
    output: Path | None
    in_place: bool
    chain: Chain
    patterns: list[str] | None
    budget: int
    options: OutputOptions
    overwrite: bool
    driver: str
    driver_options: dict[str, Any]
    nranks: int
    provenance: dict[str, str]
    progress: Callable[[int], None] | None
    respect_fill_value: bool


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
    start = time.perf_counter()
    with collective_errors(comm, "validate"):
        job = _validate(
            input, output, kernels, datasets, in_place, overwrite, memory, options, driver,
            driver_options, size(comm), dict(provenance or {}), progress, respect_fill_value,
        )  # fmt: skip
    with collective_errors(comm, "inspect"):
        plan = _inspect(job) if rank(comm) == 0 else None
    plan = bcast(comm, plan)
    assert plan is not None
    reductions, record = _execute(job, plan, comm)
    records = allgather(comm, record)
    destination = job.input if job.in_place else job.output
    return Result(
        output=None if destination is None else str(destination),
        datasets=[t.path for t in plan.targets],
        reductions=reductions,
        bytes_read=[r.read for r in records],
        bytes_written=[r.written for r in records],
        seconds=bcast(comm, time.perf_counter() - start),
        busy_seconds=[r.busy for r in records],
        decomposition={t.path: [r.shares[t.path] for r in records] for t in plan.targets},
    )


@dataclasses.dataclass
class _Record:
    """What one rank did (gathered into the Result)."""

    read: int = 0
    written: int = 0
    busy: float = 0.0
    shares: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


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
    **driver_options: Any,
) -> list[Target]:
    """Validate like :func:`apply` and list the datasets it would process (one process).

    Reads metadata only; with :func:`share` this is what ``h5par plan`` prints.
    """
    job = _validate(
        input, output, kernels, datasets, in_place, overwrite, memory, options, driver,
        driver_options, nranks, {}, None, respect_fill_value,
    )  # fmt: skip
    return _inspect(job).targets


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
) -> _Job:
    try:
        budget = parse_size(memory)
    except ValueError as exc:
        raise UsageError(f"memory: {exc}") from None
    chain = Chain.from_specs(kernels)
    options = options or OutputOptions()
    source = Path(input)
    if not source.is_file() and driver != "family":
        raise UsageError(f"input {str(source)!r} does not exist or is not a file")
    target = None if output is None else Path(output)
    if in_place and target is not None:
        raise UsageError("give either an output path or in_place = true, not both")
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
    if writes and nranks > 1 and not h5py.get_config().mpi:
        raise H5ParError(SERIAL_H5PY_FIX.format(n=nranks))
    if isinstance(datasets, str):
        datasets = [datasets]
    return _Job(
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
        raise UsageError(f"output {str(target)!r} exists (set overwrite = true to replace it)")
    if not target.parent.is_dir():
        raise UsageError(f"output folder {str(target.parent)!r} does not exist")


def _open_input_serial(job: _Job) -> h5py.File:
    driver = None if job.driver in ("auto", "sec2", "mpio") else job.driver
    try:
        return h5py.File(job.input, "r", driver=driver, **job.driver_options)
    except OSError as exc:
        raise UsageError(f"cannot open {str(job.input)!r} as HDF5: {exc}") from None


def _inspect(job: _Job) -> Plan:
    try:
        with _open_input_serial(job) as src:
            paths = select_paths(dataset_paths(src), job.patterns)
            targets = [t for t in (_named(p, _target, job, src) for p in paths) if t is not None]
            processed = {t.path for t in targets}
            copies = [_parallel_copy(job, src[p]) for p in dataset_paths(src) if p not in processed]
            order = bool(src.id.get_create_plist().get_link_creation_order())
            return Plan(targets, src.userblock_size, order, [c for c in copies if c is not None])
    except UsageError:
        raise
    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
        # HDF5 refused the file's structure (corrupt, unknown messages...): an input problem.
        raise UsageError(f"cannot read {str(job.input)!r}: {type(exc).__name__}: {exc}") from None


#: Untouched datasets at least this large are copied by all ranks (smaller: HDF5's object copy).
PARALLEL_COPY_BYTES = 64 * 2**20
#: Filters an identity copy can re-apply exactly (deflate, shuffle, fletcher32).
_LOSSLESS_FILTERS = frozenset({h5z.FILTER_DEFLATE, h5z.FILTER_SHUFFLE, h5z.FILTER_FLETCHER32})


def _parallel_copy(job: _Job, dset: h5py.Dataset) -> Target | None:
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


def _named(path: str, plan: Any, job: _Job, src: h5py.File) -> Target | None:
    """``plan(job, src[path])``, with HDF5's refusals turned into errors naming the dataset."""
    try:
        result: Target | None = plan(job, src[path])
    except UsageError:
        raise
    except (OSError, KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise UsageError(f"cannot read dataset {path} of {str(job.input)!r}: {exc}") from None
    return result


def _fully_allocated(dset: h5py.Dataset) -> bool:
    """True when every chunk (or the contiguous block) of ``dset`` exists in the file."""
    if dset.chunks is None:
        return bool(dset.id.get_storage_size() > 0)
    grid = math.prod(-(-n // c) for n, c in zip(dset.shape, dset.chunks, strict=True))
    return bool(dset.id.get_num_chunks() == grid)


def _target(job: _Job, dset: h5py.Dataset) -> Target | None:
    """Plan one selected dataset, or None when it is only copied.

    Copied as they are: datasets without elements to process (null dataspace) and, when
    writing a new file, datasets with no kernel and no layout change.
    """
    copy_only = not job.chain and not job.options.changes_layout and job.output is not None
    if copy_only or dset.shape is None:
        return None
    shape, dtype = tuple(dset.shape), dset.dtype
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
    layout = source_layout(dset)
    create = dataset_options(layout, shape, out_shape, out_dtype, job.options, out_dtype != dtype)
    lzf = create.get("compression") == "lzf" or (job.in_place and layout.compression == "lzf")
    if lzf and job.nranks > 1:
        # Measured here: HDF5 1.10's collective filtered writes corrupt h5py's LZF chunks.
        raise UsageError(
            f"dataset {dset.name}: LZF output cannot be written by {job.nranks} ranks (HDF5's "
            "parallel filtered writes corrupt LZF chunks); set compression = 'gzip' or 'none', "
            "or run on one rank"
        )
    align = create.get("chunks") if out_shape == shape else layout.chunks
    if job.in_place:
        align = layout.chunks
    out_fill = None if fill is None else convert_fill(fill, out_dtype)
    return Target(dset.name, shape, dtype, out_shape, out_dtype, align, create, fill, out_fill)


def _check_packed(job: _Job, dset: h5py.Dataset) -> None:
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


def _execute(job: _Job, plan: Plan, comm: MPI.Comm) -> tuple[dict[str, dict[str, Any]], _Record]:
    temp = _create_output(job, plan, comm) if job.output is not None else None
    try:
        reductions, record = _data_phase(job, plan, temp, comm)
        with collective_errors(comm, "finalize"):
            if temp is not None and rank(comm) == 0:
                _finalize(job, plan, temp)
    except BaseException:
        if temp is not None and rank(comm) == 0:
            temp.unlink(missing_ok=True)
        raise
    return reductions, record


def _create_output(job: _Job, plan: Plan, comm: MPI.Comm) -> Path:
    assert job.output is not None
    temp = job.output.parent / f".{job.output.name}.h5par-{uuid.uuid4().hex[:8]}.tmp"
    temp = bcast(comm, temp)
    with collective_errors(comm, "create output"):
        if rank(comm) == 0:
            try:
                order = plan.track_order or None
                with (
                    _open_input_serial(job) as src,
                    h5py.File(
                        temp, "w", userblock_size=plan.userblock or None, track_order=order
                    ) as dst,
                ):
                    created = {t.path: t.create for t in (*plan.targets, *plan.copies)}
                    build_output(src, dst, created)
                    for t in plan.targets:
                        if t.out_fill is not None and t.out_dtype != t.dtype:
                            dst[t.path].attrs.create("_FillValue", t.out_fill, dtype=t.out_dtype)
                    dst.attrs.update(job.provenance)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
    return temp


def _finalize(job: _Job, plan: Plan, temp: Path) -> None:
    assert job.output is not None
    if plan.userblock:
        with open(job.input, "rb") as src, open(temp, "r+b") as dst:
            dst.write(src.read(plan.userblock))
    os.replace(temp, job.output)


def _data_phase(
    job: _Job, plan: Plan, temp: Path | None, comm: MPI.Comm
) -> tuple[dict[str, dict[str, Any]], _Record]:
    mode = "r+" if job.in_place else "r"
    reductions: dict[str, dict[str, Any]] = {}
    record = _Record()
    with File(job.input, mode, comm, _read_driver(job, size(comm)), **job.driver_options) as fin:
        fout = File(temp, "r+", comm) if temp is not None else (fin if job.in_place else None)
        try:
            for target in plan.targets:
                dout = None if fout is None else fout[target.path]
                result = _process(job, target, fin[target.path], dout, comm, record)
                if result:
                    reductions[target.path] = result
            for copy in plan.copies:  # only with an output file
                assert fout is not None
                _pass(job, copy, Chain(), fin[copy.path], fout[copy.path], comm, record)
            if job.in_place:
                fin.attrs.update(job.provenance)  # collective: the same values on every rank
        finally:
            if fout is not None and fout is not fin:
                fout.close()
    return reductions, record


def _read_driver(job: _Job, nranks: int) -> str:
    if job.driver == "auto" and nranks > 1 and not h5py.get_config().mpi:
        return "sec2"  # read-only access needs no mpio: ranks read independently
    return job.driver


def rank_region(target: Target, r: int, nranks: int) -> Index | None:
    """The part of ``target`` rank ``r`` owns (None: nothing), chunk-aligned along axis 0."""
    if target.shape == ():
        return () if r == 0 else None
    return slab(target.shape, r, nranks, 0, target.align)


def rank_steps(target: Target, chain: Chain, r: int, nranks: int, budget: int) -> list[Index]:
    """The steps rank ``r`` reads, transforms and writes for ``target`` (pure)."""
    region = rank_region(target, r, nranks)
    if region is None:
        return []
    itemsize = max(target.dtype.itemsize, target.out_dtype.itemsize, 8 if chain.reducers else 1)
    try:
        return steps(region, itemsize, budget // STEP_FRACTION, target.align)
    except ValueError as exc:
        raise UsageError(f"memory = {budget} bytes is too small for {target.path}: {exc}") from None


def share(target: Target, chain: Chain, r: int, nranks: int, budget: int) -> dict[str, Any]:
    """What rank ``r`` does for ``target``: region, number of steps, bytes read (pure)."""
    region = rank_region(target, r, nranks)
    nbytes = 0 if region is None else _nbytes(region, target.dtype)
    return _share(r, region, len(rank_steps(target, chain, r, nranks, budget)), nbytes)


def _share(r: int, region: Index | None, steps: int, nbytes: int) -> dict[str, Any]:
    bounds = None if region is None else [[s.start, s.stop] for s in region]
    return {"rank": r, "region": bounds, "steps": steps, "bytes": nbytes}


def _process(
    job: _Job,
    target: Target,
    din: h5py.Dataset,
    dout: h5py.Dataset | None,
    comm: MPI.Comm,
    record: _Record,
) -> dict[str, Any]:
    chain = _prepare(job, target, din, comm)
    parts = _pass(job, target, chain, din, dout, comm, record)
    reducers = chain.reducers
    results: dict[str, Any] = {}
    for (position, kernel), part in zip(reducers, parts, strict=True):
        values = kernel.finish(part, chain.dtype_at(position, target.dtype))
        results.update(
            {(op if len(reducers) == 1 else f"{op}#{position + 1}"): v for op, v in values.items()}
        )
    return results


def _pass(
    job: _Job,
    target: Target,
    chain: Chain,
    din: h5py.Dataset,
    dout: h5py.Dataset | None,
    comm: MPI.Comm,
    record: _Record | None = None,
) -> list[Partial]:
    """One collective sweep over the dataset; returns the combined partials of reductions.

    ``record`` (None for pre-passes) collects this rank's bytes, busy time and share.
    """
    me, n = rank(comm), size(comm)
    every = [rank_steps(target, chain, r, n, job.budget) for r in range(n)]
    mine, count = every[me], max(len(s) for s in every)
    dxpl_in = transfer_plist(din, write=False)
    dxpl_out = None if dout is None else transfer_plist(dout, write=True)
    parts = [Partial() for _ in chain.reducers]
    done, busy = [0, 0], 0.0
    for i in range(count):
        index = mine[i] if i < len(mine) else None
        out = np.empty(0, target.out_dtype)
        tick = time.perf_counter()
        with collective_errors(comm, f"processing {target.path}"):
            block = read_block(din, index, dxpl_in)
            done[0] += block.nbytes
            if index is not None:
                out, block_parts = chain.apply(block, index, target.fill)
                out = _as_output(out, target)
                parts = [a.combine(b) for a, b in zip(parts, block_parts, strict=True)]
            busy += time.perf_counter() - tick
        if dout is not None:
            tick = time.perf_counter()
            write_block(dout, _boxes(target, index), out, dxpl_out)
            done[1] += out.nbytes
            busy += time.perf_counter() - tick
        if record is not None and job.progress is not None and me == 0:
            # Ranks advance in lockstep (collective steps): all of them finished step i.
            job.progress(sum(_nbytes(s[i], target.dtype) for s in every if i < len(s)))
    if record is not None:  # what this rank actually did, in the shape share() predicts
        record.read += done[0]
        record.written += done[1]
        record.busy += busy
        record.shares[target.path] = _share(me, rank_region(target, me, n), len(mine), done[0])
    gathered = allgather(comm, parts)
    return [combine_all(column) for column in zip(*gathered, strict=True)]


def _nbytes(index: Index, dtype: np.dtype[Any]) -> int:
    return math.prod(index_shape(index)) * dtype.itemsize


def _as_output(out: np.ndarray, target: Target) -> np.ndarray:
    if out.dtype == target.out_dtype:
        return out
    if out.dtype.newbyteorder("=") == target.out_dtype.newbyteorder("="):
        return out.astype(target.out_dtype)
    raise H5ParError(
        f"{target.path}: the kernels produced {out.dtype}, expected {target.out_dtype}"
    )


def _boxes(target: Target, index: Index | None) -> list[Index]:
    if index is None or 0 in index_shape(index):
        return []
    if target.out_shape == target.shape:
        return [index]
    start, stop = flat_range(index, target.shape)
    return flat_range_boxes(start, stop, target.out_shape)


def _prepare(job: _Job, target: Target, din: h5py.Dataset, comm: MPI.Comm) -> Chain:
    """Bind what kernels need before the data pass: broadcast sources, histogram ranges."""
    chain = job.chain
    for position, kernel in enumerate(chain.kernels):
        if isinstance(kernel, Broadcast):
            chain = chain.replace(
                position,
                kernel.with_source(_broadcast_source(job, target, chain, position, din, comm)),
            )
        elif isinstance(kernel, Reduce) and kernel.needs_range:
            chain = chain.replace(
                position, _histogram_range(job, target, chain, position, din, comm)
            )
    return chain


def _broadcast_source(
    job: _Job, target: Target, chain: Chain, position: int, din: h5py.Dataset, comm: MPI.Comm
) -> np.ndarray:
    """Read the source slice once (rank 0), transform it by the kernels before, share it."""
    kernel = chain.kernels[position]
    assert isinstance(kernel, Broadcast)
    index = kernel.source_index(target.shape)
    dtype = chain.dtype_at(position, target.dtype)
    shape = index_shape(index)
    if math.prod(shape) * dtype.itemsize > job.budget // 2:
        raise UsageError(
            f"broadcast: the source slice of {target.path} {shape} ({format_size(math.prod(shape) * dtype.itemsize)}) "
            f"is kept in memory and must fit half the memory budget ({format_size(job.budget)}); raise memory"
        )
    me = rank(comm)
    raw = read_block(din, index if me == 0 else None, transfer_plist(din, write=False))
    source = np.empty(shape, dtype)
    with collective_errors(comm, f"broadcast source of {target.path}"):
        if me == 0:
            source[...] = chain.prefix(position).apply(raw, index, target.fill)[0]
    bcast_array(comm, source)
    return source


def _histogram_range(
    job: _Job, target: Target, chain: Chain, position: int, din: h5py.Dataset, comm: MPI.Comm
) -> Reduce:
    """A read-only pre-pass for the global min/max a histogram without ``range`` needs."""
    kernel = chain.kernels[position]
    assert isinstance(kernel, Reduce)
    probe = Chain(
        (*chain.prefix(position).kernels, Reduce(op=["min", "max"], skipna=kernel.skipna))
    )
    (part,) = _pass(job, target, probe, din, None, comm)
    if part.count == 0:
        return kernel.with_range(0, 1)  # numpy's range for empty input
    if not (np.isfinite(part.min) and np.isfinite(part.max)):
        raise KernelError(
            f"reduce histogram of {target.path}: the data range [{part.min}, {part.max}] is not finite; set skipna = true or range = [low, high]"
        )
    return kernel.with_range(part.min, part.max)
