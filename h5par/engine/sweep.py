"""The data pass over one dataset: a sweep of collective steps, one unit per rank each.

Each step reads, transforms and writes one unit per rank (ranks without one make empty
calls; writes of filtered outputs are collective, other transfers independent), reusing
one set of buffers (a :class:`~h5par.kernels.Scratch`) for every step of a dataset, then
agrees and records the finished units (a *checkpoint*: after every step, or every
:data:`CHECKPOINT_SECONDS` for compressed outputs, whose chunk index must be flushed
first). In-place runs stage each block's new data before overwriting the old. A stop
signal ends the pass after the step's checkpoint with :class:`~h5par.errors.StoppedError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

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
from h5par.engine.journal import NO_JOURNAL, Journaling
from h5par.engine.plan import pieces, units
from h5par.errors import H5ParError, StoppedError
from h5par.hdf5.io import full_storage, read_block, read_selected, transfer_plist, write_block
from h5par.kernels import AxisPartial, Chain, Partial, Scratch, combine_all
from h5par.kernels.axes import finish
from h5par.parallel.agreement import Outcome, collective_errors
from h5par.parallel.comm import allgather, rank, size
from h5par.parallel.faults import inject
from h5par.parallel.guard import collective_call

if TYPE_CHECKING:
    from h5par.parallel.comm import Comm

__all__ = [
    "CHECKPOINT_SECONDS",
    "Record",
    "Sweep",
    "flush",
    "read_target",
    "run_pass",
    "statistics",
    "sweep_of",
]

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


def sweep_of(
    work: Work,
    target: Target,
    chain: Chain,
    comm: Comm,
    din: h5py.Dataset,
    dout: h5py.Dataset | None = None,
    *,
    journal: Journaling = NO_JOURNAL,
    record: Record | None = None,
) -> Sweep:
    """The sweep over ``din`` into ``dout`` (None: nothing written) of the units still to do.

    ``record`` (None for pre-passes) collects this rank's counters at the end.
    """
    blocks = units(target, chain, work.budget)
    todo = journal.remaining(target.path, len(blocks))
    n = size(comm)
    parts = journal.load_partials(target.path, len(chain.reducers)) if chain.reducers else []
    return (_AxisSweep if target.axes else Sweep)(
        work=work,
        target=target,
        chain=chain,
        comm=comm,
        journal=journal,
        record=record,
        din=din,
        dout=dout,
        dxpl=None if dout is None else transfer_plist(dout),
        blocks=blocks,
        pieces=pieces(target, chain, blocks, work.budget) if target.axes else [],
        plan=owned(todo, len(blocks), n) if work.options.subfiled else assign(todo, n),
        parts=parts,
        pending_parts=[Partial() for _ in parts],
        resumed=len(blocks) - len(todo),
    )


def run_pass(sweep: Sweep) -> list[Partial]:
    """One sweep over the dataset (collective steps); the combined partials of reductions."""
    for i in range(sweep.steps):
        u = sweep.unit(sweep.me, i)
        tick = time.perf_counter()
        with sweep.processing():
            block = sweep.read(u)
            out = sweep.compute(u, block)
        del block  # only ``out`` is held while writing, as the budget counts
        sweep.stage(i, u, out)
        agreed = sweep.write(u, out)
        sweep.busy += time.perf_counter() - tick
        del out  # nothing holds the block: the next step reuses the sweep's buffers
        sweep.checkpoint(i, agreed)
    sweep.finish()
    return sweep.parts


def statistics(chain: Chain, parts: list[Partial], dtype: np.dtype[Any]) -> dict[str, Any]:
    """The results of ``chain``'s global reductions from their combined ``parts``.

    Each op by name, or ``op#k`` for the ``k``-th kernel when the chain has several.
    """
    reducers = chain.reducers
    results: dict[str, Any] = {}
    for (position, kernel), part in zip(reducers, parts, strict=True):
        values = kernel.finish(part, chain.dtype_at(position, dtype))
        results.update(
            {(op if len(reducers) == 1 else f"{op}#{position + 1}"): v for op, v in values.items()}
        )
    return results


@dataclasses.dataclass
class _Block:
    """A block of input as read: where it lies, its data, with a halo where it sits in them.

    A unit staged by a stopped in-place run is read as its new data (``staged``).
    """

    index: Index | None  # None: an empty part (a rank without a unit in the step)
    data: Any  # the array read (a derived dataset's: its inputs' arrays by name)
    core: Index | None = None
    staged: bool = False


@dataclasses.dataclass(kw_only=True)
class Sweep:
    """One sweep over a dataset: who does which unit, what is finished, reused buffers.

    Each step reads (:meth:`read`) and transforms (:meth:`compute`) one unit per rank in
    one agreement, stages it in place (:meth:`stage`), writes it (:meth:`write`), then
    records what is finished (:meth:`checkpoint`). ``scratch`` holds the read block and the
    kernels' results from one step to the next: a step's block is written (and, in place,
    staged) before the next step reads. The counters are this rank's.
    """

    #: Fault points entered on every rank before a step reads and transforms its unit.
    FAULTS: ClassVar[tuple[str, ...] | None] = ("read", "kernel")

    work: Work
    target: Target
    chain: Chain
    comm: Comm
    journal: Journaling
    record: Record | None  # where the counters go at the end; None: a pre-pass
    din: h5py.Dataset
    dout: h5py.Dataset | None  # None: nothing is written (statistics, pre-passes)
    dxpl: Any  # transfer properties of the writes to dout (None: independent)
    blocks: list[Index]
    pieces: list[Index]  # a reduction along axes: how each unit reads its input
    plan: list[list[int]]  # per rank: its units, in order
    parts: list[Partial]  # combined statistics of checkpointed units (same on every rank)
    pending_parts: list[Partial]  # this rank's statistics since the last checkpoint
    pending: list[int] = dataclasses.field(default_factory=list)  # finished, not recorded
    last: float = dataclasses.field(default_factory=time.monotonic)
    scratch: Scratch = dataclasses.field(default_factory=Scratch)
    flushed: bool = False  # the dataset's storage address is on disk
    read_bytes: int = 0
    written_bytes: int = 0
    busy: float = 0.0  # seconds spent reading, transforming, staging and writing
    resumed: int = 0  # units finished by an earlier run

    @property
    def me(self) -> int:
        """This rank."""
        return rank(self.comm)

    @property
    def steps(self) -> int:
        """How many collective steps the sweep takes (the most units a rank has)."""
        return max(len(p) for p in self.plan)

    @property
    def deferred(self) -> bool:
        """True when every checkpoint flushes the output first (filters, part files).

        Those checkpoint every :data:`CHECKPOINT_SECONDS` rather than every step.
        """
        return self.target.filtered or self.work.options.subfiled

    def unit(self, r: int, i: int) -> int | None:
        """Rank ``r``'s unit in step ``i`` (None: it has none left)."""
        return self.plan[r][i] if i < len(self.plan[r]) else None

    def step_units(self, i: int) -> list[int]:
        """Every rank's unit in step ``i``."""
        return [u for r in range(len(self.plan)) if (u := self.unit(r, i)) is not None]

    def processing(self) -> contextlib.AbstractContextManager[Outcome]:
        """The agreement around reading and transforming a step's unit."""
        phase = f"processing {self.target.path}"
        return collective_errors(self.comm, phase, fault=self.FAULTS)

    def read(self, u: int | None) -> Iterable[_Block]:
        """Read this rank's unit ``u`` (None: an empty part) into the sweep's buffers."""
        target = self.target
        staged = u is not None and self.journal.is_staged(target.path, u)
        index = None if u is None or staged else self.blocks[u]
        data, core = _load(target, self.chain, self.din, index, self.scratch)
        self.read_bytes += 0 if index is None else nbytes(index, target.dtype)
        if u is not None and staged:  # an in-place unit staged by a stopped run
            return [_Block(index, self.journal.staged_data(target.path, u), staged=True)]
        return [_Block(index, data, core)]

    def compute(self, u: int | None, blocks: Iterable[_Block]) -> np.ndarray:
        """Transform the unit's block (a staged one is new data already)."""
        (block,) = blocks
        if block.staged:
            return block.data
        if block.index is None:
            return np.empty(0, self.target.out_dtype)
        with _naming(self):
            out, parts = self.chain.apply(
                block.data, block.index, self.target.fill, block.core, self.scratch
            )
            out = _as_output(out, self.target)
        self.add_parts(parts)
        return out

    def add_parts(self, parts: list[Partial]) -> None:
        """Add one block's statistics of the global reductions to this rank's pending ones."""
        self.pending_parts = [a.combine(b) for a, b in zip(self.pending_parts, parts, strict=True)]

    def stage(self, i: int, u: int | None, out: np.ndarray) -> None:
        """In place: keep the new data of this step's units before the old data is overwritten."""
        if not self.work.in_place or self.dout is None:
            return
        path = self.target.path
        with collective_errors(self.comm, f"staging {path}"):
            if u is not None:
                self.journal.stage(path, u, out)
        self.journal.mark_staged(path, self.step_units(i))
        with collective_errors(self.comm, "journal"):
            self.journal.checkpoint(write=self.me == 0, durable=self.work.in_place)

    def write(self, u: int | None, out: np.ndarray) -> Outcome:
        """Write this rank's block (collective when ``dxpl`` is) and agree on the outcome.

        Fault points: ``collective-write`` before a collective write (the other ranks may be
        in the call already), ``write`` after the write.
        """
        index = None if u is None else self.blocks[u]
        due = time.monotonic() - self.last > CHECKPOINT_SECONDS
        fault = None if self.dxpl is None else "collective-write"
        phase = f"writing {self.target.path}"
        with collective_errors(self.comm, phase, due=due, fault=fault) as agreed:
            self.put(index, out)
        return agreed

    def put(self, index: Index | None, out: np.ndarray) -> None:
        """Write block ``out`` at ``index`` into ``dout`` (if any), then the ``write`` fault point.

        The caller agrees on the outcome (:meth:`write`, or a batch of small datasets).
        """
        if self.dout is not None:
            _write(self, self.dout, index, out)
            self.written_bytes += out.nbytes
        inject("write")  # after the block's work: agreements enter fault points before it

    def checkpoint(self, i: int, agreed: Outcome) -> None:
        """After step ``i``: record the finished units when due, report progress, stop if asked.

        With a journal, every step is recorded, or for deferred outputs every
        :data:`CHECKPOINT_SECONDS` and at a stop; without one only :meth:`finish` records.
        """
        self.pending += self.step_units(i)
        if self.journal.resumable and (agreed.due or agreed.stop or not self.deferred):
            self.commit()
        if self.record is not None and self.work.progress is not None and self.me == 0:
            done = self.step_units(i)
            self.work.progress(sum(read_bytes(self.target, self.blocks[v]) for v in done))
        if agreed.stop and self.record is not None:  # pre-passes leave stopping to the main pass
            raise StoppedError(self.journal.stop_message(agreed.stop))

    def commit(self) -> None:
        """Record the finished units (and statistics) in the journal. Collective."""
        with collective_errors(self.comm, f"checkpoint of {self.target.path}", fault="checkpoint"):
            # One process writes through HDF5's caches (chunks allocated as they are written,
            # raw data in the sieve buffer): flushed at every checkpoint, or a kill loses
            # units the journal calls finished. Under mpio storage is allocated at open and
            # data written through: the first flush puts the addresses on disk.
            alone = size(self.comm) == 1
            if self.dout is not None and (self.deferred or not self.flushed or alone):
                flush(self.dout.file, self.comm)
                self.flushed = True
        if self.parts:  # the same on every rank: the chain has reducers
            gathered = allgather(self.comm, self.pending_parts)
            fresh = [combine_all(column) for column in zip(*gathered, strict=True)]
            self.parts = [a.combine(b) for a, b in zip(self.parts, fresh, strict=True)]
            self.pending_parts = [Partial() for _ in self.parts]
        if self.journal.resumable:  # without a journal, nothing to agree on writing
            self._record()
        self.pending, self.last = [], time.monotonic()

    def _record(self) -> None:
        """Write the journal with the pending units finished, then drop their staged data.

        Rank 0 alone does both, in this order: the staged data of a unit goes only once the
        journal says it is finished (a unit left staged without it would be read again from
        data already overwritten, and transformed twice).
        """
        path = self.target.path
        self.journal.finish(path, self.pending)
        with collective_errors(self.comm, "journal"):
            self.journal.checkpoint(write=self.me == 0, durable=self.work.in_place)
            if self.me == 0:
                if self.parts:
                    self.journal.save_partials(path, self.parts)
                self.journal.unstage(path, self.pending)

    def finish(self) -> None:
        """Record the units left (all of them without a journal); add to the run's record."""
        if self.pending or not self.journal.resumable:
            self.commit()
        if self.record is None:
            return
        record, me = self.record, self.me
        record.read += self.read_bytes
        record.written += self.written_bytes
        record.busy += self.busy
        record.resumed += self.resumed
        mine = [self.blocks[v] for v in self.plan[me]]  # in the shape share() predicts
        record.shares[self.target.path] = describe(me, mine, self.read_bytes)


class _AxisSweep(Sweep):
    """A reduction along axes: each unit is an output block, its input read piece by piece.

    Every rank makes one read per piece (ranks without a block read nothing). One agreement
    covers all pieces of a step, so the fault points ``read`` and ``kernel`` are entered at
    each piece inside it, not by the agreement.
    """

    FAULTS = None

    def read(self, u: int | None) -> Iterator[_Block]:
        """The pieces of output block ``u``'s input, each read when it is taken."""
        target = self.target
        index = None if u is None else self.blocks[u]
        for piece in self.pieces:
            box = None if index is None else input_box(target, index, piece)
            data, core = _load(target, self.chain, self.din, box, self.scratch)
            inject("read")
            self.read_bytes += 0 if box is None else nbytes(box, target.dtype)
            yield _Block(box, data, core)

    def compute(self, u: int | None, blocks: Iterable[_Block]) -> np.ndarray:
        """Reduce the pieces, as they are read, into the output block."""
        target, chain = self.target, self.chain
        kernel = chain.axis_reducer
        assert kernel is not None
        op = kernel.ops[0]
        total: AxisPartial | None = None
        for block in blocks:
            inject("kernel")
            if block.index is not None:
                with _naming(self):
                    part, parts = chain.reduce_axes(
                        block.data, block.index, target.fill, block.core, self.scratch
                    )
                total = part if total is None else total.combine(part, op)
                self.add_parts(parts)
        if total is None:
            return np.empty(0, target.out_dtype)
        dtype = chain.dtype_at(len(chain) - 1, target.dtype)
        with _naming(self):
            return _as_output(finish(total, op, kernel.ddof, dtype, target.out_fill), target)


def flush(file: h5py.File, comm: Comm) -> None:
    """Flush ``file`` before units count as finished. Collective under mpio.

    What must be on disk first: the chunk index of a filtered dataset, what a part file
    holds, and where any dataset's storage lies (HDF5 allocates it at the first write,
    under mpio when the dataset is opened, and keeps that in its cache).
    """
    with _collective_if(file.driver == "mpio", comm):
        file.flush()


def _collective_if(collective: bool, comm: Comm) -> contextlib.AbstractContextManager[None]:
    """Mark a call as collective (:func:`h5par.parallel.guard.collective_call`) when it is one."""
    return collective_call(comm) if collective else contextlib.nullcontext()


def _write(sweep: Sweep, dout: h5py.Dataset, index: Index | None, out: np.ndarray) -> None:
    """Write this rank's block ``out`` (collective when the sweep's ``dxpl`` is)."""
    try:
        with _collective_if(sweep.dxpl is not None, sweep.comm):
            write_block(dout, output_boxes(sweep.target, index), out, sweep.dxpl)
    except OSError as exc:  # name a full disk, quota or file-size limit if it is one
        why = full_storage(exc, Path(dout.file.filename), out.nbytes, dout.nbytes)
        hint = "" if why is None else f" (disk full, quota or file-size limit: {why})"
        raise H5ParError(
            f"cannot write {sweep.target.path} of {sweep.work.destination}: {exc}{hint}"
        ) from exc


def read_target(
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
        return read_target(target, din, index, scratch), None
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


@contextlib.contextmanager
def _naming(sweep: Sweep) -> Iterator[None]:
    """Name the file and dataset in kernel errors (kernels see blocks only)."""
    try:
        yield
    except H5ParError as exc:
        raise type(exc)(f"{str(sweep.work.input)!r}: dataset {sweep.target.path}: {exc}") from exc


def _as_output(out: np.ndarray, target: Target) -> np.ndarray:
    if out.dtype == target.out_dtype:
        return out
    if out.dtype.newbyteorder("=") == target.out_dtype.newbyteorder("="):
        return out.astype(target.out_dtype)
    raise H5ParError(f"the kernels produced {out.dtype}, expected {target.out_dtype}")
