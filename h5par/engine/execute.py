"""Carrying out a plan: the work folder, the collective data pass, checkpoints and resume.

Phases, each ending in an agreement on failure (``collective_errors``):

1. *journal* (rank 0, :mod:`h5par.engine.workfolder`): resume the work folder of an earlier run
   of the same job, or start a new one, with the output's structure in it.
2. *data* (every rank): the units still to do are split into contiguous runs, one per rank;
   each step reads, transforms and writes one unit per rank (ranks without one make empty
   calls; writes of filtered outputs are collective, other transfers independent), reusing
   one set of buffers (a :class:`~h5par.kernels.Scratch`) for every step of a dataset, then
   agrees and records the finished units (a *checkpoint*: after every step,
   or every :data:`CHECKPOINT_SECONDS` for compressed outputs, whose chunk index must be
   flushed first). In-place runs stage each block's new data before overwriting the old.
   A stop signal ends the pass after the step's checkpoint with :class:`StoppedError`.
3. *finalize* (rank 0, :mod:`h5par.engine.workfolder`): the output moved into place, the work
   folder removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from h5par.core.decomposition import Index, index_shape
from h5par.core.halo import extend
from h5par.core.units import (
    Target,
    assign,
    describe,
    input_box,
    nbytes,
    output_boxes,
    owned,
    read_bytes,
)
from h5par.engine.config import Work
from h5par.engine.journal import Journal
from h5par.engine.plan import Plan, pieces, units
from h5par.engine.workfolder import (
    PARTS,
    all_targets,
    finalize,
    left_as_is,
    open_journal,
    partly_updated,
)
from h5par.errors import H5ParError, StoppedError
from h5par.hdf5.io import File, full_storage, read_block, read_selected, transfer_plist, write_block
from h5par.hdf5.subfiles import part_datasets, part_path
from h5par.kernels import (
    AxisPartial,
    Broadcast,
    Chain,
    KernelError,
    Partial,
    Reduce,
    Scratch,
    combine_all,
)
from h5par.kernels.axes import finish
from h5par.parallel.agreement import Outcome, collective_errors
from h5par.parallel.comm import allgather, bcast_array, rank, size
from h5par.parallel.faults import inject
from h5par.parallel.guard import collective_call

if TYPE_CHECKING:
    from h5par.parallel.comm import Comm

__all__ = ["CHECKPOINT_SECONDS", "Record", "execute"]

#: Seconds between checkpoints of compressed or subfiled outputs (each one flushes the file).
CHECKPOINT_SECONDS = 30.0


@dataclasses.dataclass
class Record:
    """What one rank did (gathered into the Result)."""

    read: int = 0
    written: int = 0
    busy: float = 0.0
    resumed: int = 0  # units already finished by an earlier run
    shares: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


def execute(work: Work, plan: Plan, comm: Comm) -> tuple[dict[str, dict[str, Any]], Record]:
    """Run the data pass of ``plan`` and put its output in place. Collective over comm."""
    journal, lock = open_journal(work, plan, comm)
    with lock or contextlib.nullcontext():  # rank 0 holds the work folder until it is done
        try:
            reductions, record = _data_phase(work, plan, journal, comm)
            with collective_errors(comm, "finalize"):
                inject("finalize")  # the last point where any rank may still fail
            with collective_errors(comm, "finalize"):  # only rank 0 acts: no failure after it
                if journal is not None and rank(comm) == 0:
                    finalize(work, plan, journal)
        except StoppedError:  # agreed by every rank, each has closed the file
            if journal is not None and work.in_place:
                allgather(comm, None)  # ... every rank: the file is as the run leaves it
                if rank(comm) == 0:
                    left_as_is(work, journal)
            raise  # the work folder stays: the next run resumes from it
        except Exception as exc:
            note = None if journal is None else partly_updated(work, journal)
            if note is None and journal is not None and rank(comm) == 0:
                journal.remove()
            if note is not None and isinstance(exc, H5ParError):
                exc.args = (f"{exc}; {note}",)
            elif note is not None:
                raise H5ParError(f"{type(exc).__name__}: {exc}; {note}") from exc
            raise
    return reductions, record


# Phase 2: the data pass.


def _data_phase(
    work: Work, plan: Plan, journal: Journal | None, comm: Comm
) -> tuple[dict[str, dict[str, Any]], Record]:
    mode = "r+" if work.in_place else "r"
    reductions: dict[str, dict[str, Any]] = {}
    record = Record()
    with collective_errors(comm, "open"):
        inject("open")
        fin = File(
            work.input, mode, comm, _read_driver(work, plan, size(comm)), **work.driver_options
        )
    with fin:
        fout = fin if work.in_place else None
        if work.output is not None:
            assert journal is not None
            with collective_errors(comm, "open output"):
                fout = _open_output(work, plan, journal, comm)
        try:
            for target in plan.targets:
                dout = None if fout is None else fout[target.path]
                result = _process(work, target, fin[target.path], dout, comm, journal, record)
                if result:
                    reductions[target.path] = result
            for copy in plan.copies:  # only with an output file
                assert fout is not None
                chain = work.chain_for(copy)
                _pass(work, copy, chain, fin[copy.path], fout[copy.path], comm, journal, record)
            if work.in_place:
                fin.attrs.update(work.provenance)  # collective: the same values on every rank
        except BaseException:
            if fout is not None and fout is not fin:
                with contextlib.suppress(Exception):  # report the first error, not the close's
                    fout.close()
            raise
        if fout is not None and fout is not fin:
            fout.close()
    return reductions, record


def _open_output(work: Work, plan: Plan, journal: Journal, comm: Comm) -> h5py.File:
    """The temporary output, or with subfiled output this rank's part file. Collective."""
    if not work.options.subfiled:
        return File(journal.output, "r+", comm)
    folder = journal.folder / PARTS
    folder.mkdir(exist_ok=True)
    part = h5py.File(part_path(folder, rank(comm)), "a")  # this rank's alone: serial HDF5
    part_datasets(part, all_targets(plan))
    return part


def _read_driver(work: Work, plan: Plan, nranks: int) -> str:
    """The input's driver: without mpio, or for virtual datasets, ranks read independently.

    HDF5 1.10 cannot read virtual datasets through mpio; read-only access needs no mpio.
    """
    virtual = any(t.virtual for t in plan.targets)
    if work.driver == "auto" and nranks > 1 and (virtual or not h5py.get_config().mpi):
        return "sec2"
    return work.driver


def _process(
    work: Work,
    target: Target,
    din: h5py.Dataset,
    dout: h5py.Dataset | None,
    comm: Comm,
    journal: Journal | None,
    record: Record,
) -> dict[str, Any]:
    chain = _prepare(work, target, din, comm, journal)
    parts = _pass(work, target, chain, din, dout, comm, journal, record)
    reducers = chain.reducers
    results: dict[str, Any] = {}
    for (position, kernel), part in zip(reducers, parts, strict=True):
        values = kernel.finish(part, chain.dtype_at(position, target.dtype))
        results.update(
            {(op if len(reducers) == 1 else f"{op}#{position + 1}"): v for op, v in values.items()}
        )
    return results


@dataclasses.dataclass
class _Sweep:
    """One sweep over a dataset: who does which unit, what is finished, reused buffers.

    ``scratch`` holds the read block and the kernels' results from one step to the next:
    a step's block is written (and, in place, staged) before the next step reads.
    """

    work: Work
    target: Target
    chain: Chain
    comm: Comm
    journal: Journal | None
    blocks: list[Index]
    pieces: list[Index]  # a reduction along axes: how each unit reads its input
    plan: list[list[int]]  # per rank: its units, in order
    parts: list[Partial]  # combined statistics of checkpointed units (same on every rank)
    pending_parts: list[Partial]  # this rank's statistics since the last checkpoint
    pending: list[int] = dataclasses.field(default_factory=list)  # finished, not recorded
    last: float = dataclasses.field(default_factory=time.monotonic)
    scratch: Scratch = dataclasses.field(default_factory=Scratch)
    flushed: bool = False  # the dataset's storage address is on disk

    @property
    def deferred(self) -> bool:
        """True when every checkpoint flushes the output first (filters, part files).

        Those checkpoint every :data:`CHECKPOINT_SECONDS` rather than every step.
        """
        return self.target.filtered or self.work.options.subfiled

    def unit(self, r: int, i: int) -> int | None:
        return self.plan[r][i] if i < len(self.plan[r]) else None

    def step_units(self, i: int) -> list[int]:
        return [u for r in range(len(self.plan)) if (u := self.unit(r, i)) is not None]

    def checkpoint(self, dout: h5py.Dataset | None) -> None:
        """Record the finished units (and statistics) in the journal. Collective."""
        me = rank(self.comm)
        with collective_errors(self.comm, f"checkpoint of {self.target.path}"):
            inject("checkpoint")
            if dout is not None and (self.deferred or not self.flushed):
                # Before units count, on disk: the chunk index of a filtered dataset, what
                # a part file holds, and where any dataset's storage lies (HDF5 allocates
                # it at the first write, under mpio when the dataset is opened, and keeps
                # that in its cache).
                with _collective_if(dout.file.driver == "mpio", self.comm):
                    dout.file.flush()
                self.flushed = True
        if self.parts:  # the same on every rank: the chain has reducers
            gathered = allgather(self.comm, self.pending_parts)
            fresh = [combine_all(column) for column in zip(*gathered, strict=True)]
            self.parts = [a.combine(b) for a, b in zip(self.parts, fresh, strict=True)]
            self.pending_parts = [Partial() for _ in self.parts]
        if self.journal is not None:
            self.journal.finish(self.target.path, self.pending)
            with collective_errors(self.comm, "journal"):
                if me == 0:
                    self.journal.save()
                    if self.parts:
                        self.journal.save_partials(self.target.path, self.parts)
                for u in self.pending:
                    self.journal.redo_file(self.target.path, u).unlink(missing_ok=True)
        self.pending, self.last = [], time.monotonic()


def _collective_if(collective: bool, comm: Comm) -> contextlib.AbstractContextManager[None]:
    """Mark a call as collective (:func:`h5par.parallel.guard.collective_call`) when it is one."""
    return collective_call(comm) if collective else contextlib.nullcontext()


def _pass(
    work: Work,
    target: Target,
    chain: Chain,
    din: h5py.Dataset,
    dout: h5py.Dataset | None,
    comm: Comm,
    journal: Journal | None = None,
    record: Record | None = None,
) -> list[Partial]:
    """One sweep over the dataset (collective steps); the combined partials of reductions.

    ``record`` (None for pre-passes) collects this rank's bytes, busy time and share.
    """
    me, n = rank(comm), size(comm)
    blocks = units(target, chain, work.budget)
    todo = list(range(len(blocks))) if journal is None else journal.remaining(target.path)
    start = [Partial() for _ in chain.reducers]
    if journal is not None and chain.reducers:
        start = journal.load_partials(target.path, len(start))
    parts = pieces(target, chain, blocks, work.budget) if target.axes else []
    plan = owned(todo, len(blocks), n) if work.options.subfiled else assign(todo, n)
    sweep = _Sweep(work, target, chain, comm, journal, blocks, parts, plan, start, start)
    sweep.pending_parts = [Partial() for _ in start]
    staged = set() if journal is None else set(journal.staged.get(target.path, []))
    dxpl = None if dout is None else transfer_plist(dout)
    done, busy = [0, 0], 0.0
    count = max(len(p) for p in sweep.plan)
    for i in range(count):
        u = sweep.unit(me, i)
        index = None if u is None else blocks[u]
        tick = time.perf_counter()
        redo = u in staged and journal is not None and journal.redo_file(target.path, u).exists()
        out = _compute(sweep, din, u, redo, done)
        if work.in_place and journal is not None and dout is not None:
            _stage(sweep, i, u, out)
        agreed = _write(sweep, dout, dxpl, index, out)
        done[1] += out.nbytes if dout is not None else 0
        busy += time.perf_counter() - tick
        sweep.pending += sweep.step_units(i)
        if journal is not None and (agreed.due or agreed.stop or not sweep.deferred):
            sweep.checkpoint(dout)
        if record is not None and work.progress is not None and me == 0:
            work.progress(sum(read_bytes(target, blocks[v]) for v in sweep.step_units(i)))
        del out  # nothing holds the block: the next step reuses the sweep's buffers
        if agreed.stop and record is not None:  # pre-passes leave stopping to the main pass
            _stop(sweep, dout, agreed.stop)
    if sweep.pending or journal is None:
        sweep.checkpoint(dout)
    if record is not None:  # what this rank actually did, in the shape share() predicts
        record.read += done[0]
        record.written += done[1]
        record.busy += busy
        record.resumed += len(blocks) - len(todo)
        record.shares[target.path] = describe(me, [blocks[v] for v in sweep.plan[me]], done[0])
    return sweep.parts


def _read(
    target: Target, din: h5py.Dataset, index: Index | None, scratch: Scratch | None = None
) -> np.ndarray:
    """Read block ``index`` of the target, through its selection if it has one (independent).

    With ``scratch``, into its buffer ``"read"``, valid until the next read.
    """
    shape = (0,) if index is None else index_shape(index)
    out = None if scratch is None or index is None else scratch.take(shape, din.dtype, "read")
    if target.select is None:
        return read_block(din, index, out=out)
    slabs = [] if index is None else target.select.source(index)
    return read_selected(din, slabs, shape, out=out)


def _load(
    target: Target,
    chain: Chain,
    din: h5py.Dataset,
    index: Index | None,
    scratch: Scratch | None = None,
) -> tuple[np.ndarray, Index | None]:
    """Read block ``index``, extended by the chain's halo if it has one (independent).

    Returns the block and, with a halo, where the block itself lies in the extended one.
    The halo is read from the file in the same call (no exchange between ranks). With
    ``scratch``, into its buffer ``"read"``, valid until the next read.
    """
    halo = None if index is None else chain.halo(len(target.shape))
    if halo is None:
        return _read(target, din, index, scratch), None
    assert index is not None
    extended = extend(index, target.shape, *halo)
    boxes = extended.boxes()
    slabs: list[tuple[tuple[int, ...], ...]]
    if target.select is None:
        slabs = [(tuple(b.start for b in box), index_shape(box), (1,) * len(box)) for box in boxes]
    else:
        slabs = [slab for box in boxes for slab in target.select.source(box)]
    shape = extended.grid_shape
    out = None if scratch is None else scratch.take(shape, din.dtype, "read")
    grid = read_selected(din, slabs, shape, out=out)
    for axis, taken in enumerate(extended.positions()):
        if taken is not None:  # wrapped around: put the far end's elements in place
            grid = np.take(grid, taken, axis=axis)
    return grid, extended.core


def _write(
    sweep: _Sweep, dout: h5py.Dataset | None, dxpl: Any, index: Index | None, out: np.ndarray
) -> Outcome:
    """Write this rank's block (collective when ``dxpl`` is) and agree on the outcome."""
    target = sweep.target
    due = time.monotonic() - sweep.last > CHECKPOINT_SECONDS
    with collective_errors(sweep.comm, f"writing {target.path}", due=due) as agreed:
        if dout is not None:
            if dxpl is not None:
                inject("collective-write")  # the other ranks are in the call by now
            try:
                with _collective_if(dxpl is not None, sweep.comm):
                    write_block(dout, output_boxes(target, index), out, dxpl)
            except OSError as exc:  # name a full disk, quota or file-size limit if it is one
                why = full_storage(exc, Path(dout.file.filename), out.nbytes, dout.nbytes)
                hint = "" if why is None else f" (disk full, quota or file-size limit: {why})"
                raise H5ParError(
                    f"cannot write {target.path} of {sweep.work.destination}: {exc}{hint}"
                ) from exc
        inject("write")
    return agreed


def _compute(
    sweep: _Sweep, din: h5py.Dataset, u: int | None, redo: bool, done: list[int]
) -> np.ndarray:
    """Read and transform this rank's unit ``u`` (None: an empty part) in the sweep's buffers."""
    target = sweep.target
    index = None if u is None else sweep.blocks[u]
    out = np.empty(0, target.out_dtype)
    with collective_errors(sweep.comm, f"processing {target.path}"):
        if target.axes:
            return _reduce_block(sweep, din, index, done)
        block, core = _load(target, sweep.chain, din, None if redo else index, sweep.scratch)
        done[0] += 0 if index is None or redo else nbytes(index, target.dtype)
        inject("read")
        inject("kernel")
        if u is not None and redo:  # an in-place unit staged by a stopped run
            assert sweep.journal is not None
            out = np.load(sweep.journal.redo_file(target.path, u), allow_pickle=False)
        elif index is not None:
            with _naming(sweep):
                out, parts = sweep.chain.apply(block, index, target.fill, core, sweep.scratch)
                out = _as_output(out, target)
            sweep.pending_parts = [
                a.combine(b) for a, b in zip(sweep.pending_parts, parts, strict=True)
            ]
    return out


def _reduce_block(
    sweep: _Sweep, din: h5py.Dataset, index: Index | None, done: list[int]
) -> np.ndarray:
    """A reduction along axes: read output block ``index``'s input piece by piece, reduce.

    Every rank makes one read per piece (ranks without a block read nothing).
    """
    target, chain = sweep.target, sweep.chain
    kernel = chain.axis_reducer
    assert kernel is not None
    op = kernel.ops[0]
    total: AxisPartial | None = None
    for piece in sweep.pieces:
        box = None if index is None else input_box(target, index, piece)
        block, core = _load(target, chain, din, box, sweep.scratch)
        inject("read")
        inject("kernel")
        if box is not None:
            done[0] += nbytes(box, target.dtype)
            with _naming(sweep):
                part = chain.reduce_axes(block, box, target.fill, core, sweep.scratch)
            total = part if total is None else total.combine(part, op)
    if total is None:
        return np.empty(0, target.out_dtype)
    dtype = chain.dtype_at(len(chain) - 1, target.dtype)
    with _naming(sweep):
        return _as_output(finish(total, op, kernel.ddof, dtype, target.out_fill), target)


@contextlib.contextmanager
def _naming(sweep: _Sweep) -> Iterator[None]:
    """Name the file and dataset in kernel errors (kernels see blocks only)."""
    try:
        yield
    except H5ParError as exc:
        raise type(exc)(f"{str(sweep.work.input)!r}: dataset {sweep.target.path}: {exc}") from exc


def _stage(sweep: _Sweep, i: int, u: int | None, out: np.ndarray) -> None:
    """In place: keep the new data of this step's units before the old data is overwritten."""
    journal = sweep.journal
    assert journal is not None
    path = sweep.target.path
    with collective_errors(sweep.comm, f"staging {path}"):
        if u is not None:
            file = journal.redo_file(path, u)
            file.parent.mkdir(exist_ok=True)
            temp = file.with_suffix(".tmp.npy")
            with warnings.catch_warnings():  # an enum's members (dtype metadata) are not data
                warnings.filterwarnings("ignore", "metadata on a dtype", UserWarning)
                np.save(temp, out, allow_pickle=False)
            os.replace(temp, file)
    journal.staged[path] = sorted({*journal.staged.get(path, []), *sweep.step_units(i)})
    with collective_errors(sweep.comm, "journal"):
        if rank(sweep.comm) == 0:
            journal.save()


def _stop(sweep: _Sweep, dout: h5py.Dataset | None, signal: str) -> None:
    """Every rank ends the run after this step's checkpoint (exit status 75)."""
    journal = sweep.journal
    if journal is None:
        raise StoppedError(
            f"stopped on {signal}; nothing was written: rerun the job to start again"
        )
    if sweep.pending:
        sweep.checkpoint(dout)
    done, total = journal.count()
    raise StoppedError(
        f"stopped on {signal} at a block boundary with {done} of {total} units done; rerun "
        f"the same job to resume (work folder {journal.folder})"
    )


def _as_output(out: np.ndarray, target: Target) -> np.ndarray:
    if out.dtype == target.out_dtype:
        return out
    if out.dtype.newbyteorder("=") == target.out_dtype.newbyteorder("="):
        return out.astype(target.out_dtype)
    raise H5ParError(f"the kernels produced {out.dtype}, expected {target.out_dtype}")


# What kernels need before the data pass.


def _prepare(
    work: Work, target: Target, din: h5py.Dataset, comm: Comm, journal: Journal | None
) -> Chain:
    """Bind what kernels need before the data pass: broadcast sources, histogram ranges.

    In-place runs keep both in the journal: a resumed run must not compute them from data
    the stopped run already overwrote.
    """
    chain = work.chain
    keep = journal if work.in_place else None
    for position, kernel in enumerate(chain.kernels):
        if isinstance(kernel, Broadcast):
            source = _broadcast_source(work, target, chain, position, din, comm, keep)
            chain = chain.replace(position, kernel.with_source(source))
        elif isinstance(kernel, Reduce) and kernel.needs_range:
            low, high = _histogram_range(work, target, chain, position, din, comm, keep)
            chain = chain.replace(position, kernel.with_range(low, high))
    return chain


def _broadcast_source(
    work: Work,
    target: Target,
    chain: Chain,
    position: int,
    din: h5py.Dataset,
    comm: Comm,
    keep: Journal | None,
) -> np.ndarray:
    """Read the source slice once (rank 0), transform it by the kernels before, share it."""
    kernel = chain.kernels[position]
    assert isinstance(kernel, Broadcast)
    index = kernel.source_index(target.shape)
    dtype = chain.dtype_at(position, target.dtype)
    shape = index_shape(index)  # it fits half the budget: checked when the input was inspected
    me = rank(comm)
    kept = None if keep is None else keep.source_file(target.path, position)
    fresh = kept is None or not kept.exists()
    source = np.empty(shape, dtype)
    with collective_errors(comm, f"broadcast source of {target.path}"):  # rank 0's read too
        raw = _read(target, din, index if me == 0 and fresh else None)
        if me == 0 and not fresh:
            assert kept is not None
            source[...] = np.load(kept, allow_pickle=False)
        elif me == 0:
            source[...] = chain.prefix(position).apply(raw, index, target.fill)[0]
            if kept is not None:
                np.save(kept, source, allow_pickle=False)
    bcast_array(comm, source)
    return source


def _histogram_range(
    work: Work,
    target: Target,
    chain: Chain,
    position: int,
    din: h5py.Dataset,
    comm: Comm,
    keep: Journal | None,
) -> tuple[Any, Any]:
    """A read-only pre-pass for the global min/max a histogram without ``range`` needs."""
    kept = {} if keep is None else {p: (lo, hi) for p, lo, hi in keep.ranges.get(target.path, [])}
    if position in kept:  # the same numpy scalar type the pre-pass gives (histogram edges)
        kind = chain.dtype_at(position, target.dtype).type
        return kind(kept[position][0]), kind(kept[position][1])
    kernel = chain.kernels[position]
    assert isinstance(kernel, Reduce)
    probe = Chain(
        (*chain.prefix(position).kernels, Reduce(op=["min", "max"], skipna=kernel.skipna))
    )
    (part,) = _pass(work, target, probe, din, None, comm)
    if part.count == 0:
        low, high = 0, 1  # numpy's range for empty input
    elif not (np.isfinite(part.min) and np.isfinite(part.max)):
        raise KernelError(
            f"reduce histogram of {target.path}: the data range [{part.min}, {part.max}] is not finite; set skipna = true or range = [low, high]"
        )
    else:
        low, high = part.min, part.max
    if keep is not None:  # JSON numbers: exact for every integer and float the data can hold
        bounds = [np.asarray(low).item(), np.asarray(high).item()]
        keep.ranges.setdefault(target.path, []).append([position, *bounds])
    return low, high
