"""Carrying out a plan: the work folder, the collective data pass, checkpoints and resume.

Phases, each ending in an agreement on failure (``collective_errors``):

1. *journal* (rank 0, :mod:`h5par.engine.workfolder`): resume the work folder of an earlier run
   of the same job, or start a new one, with the output's structure in it.
2. *data* (every rank): what kernels need first (broadcast sources, histogram ranges), then
   one sweep per dataset (:mod:`h5par.engine.sweep`): the units still to do split into
   contiguous runs, one per rank, in collective steps with checkpoints.
3. *finalize* (rank 0, :mod:`h5par.engine.workfolder`): the output moved into place, the work
   folder removed.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from h5par.core.decomposition import index_shape
from h5par.core.units import Target
from h5par.engine.config import Work
from h5par.engine.derived_sweep import run_derived
from h5par.engine.journal import NO_JOURNAL, Journal, Journaling
from h5par.engine.plan import Plan, input_cache
from h5par.engine.small import batches, process_batch
from h5par.engine.sweep import Record, read_target, run_pass, statistics, sweep_of
from h5par.engine.workfolder import (
    PARTS,
    Opened,
    all_targets,
    finalize,
    left_as_is,
    open_journal,
    partly_updated,
)
from h5par.errors import H5ParError, StoppedError
from h5par.hdf5.attributes import write_metadata
from h5par.hdf5.io import File, open_dataset
from h5par.hdf5.subfiles import part_datasets, part_path
from h5par.kernels import Broadcast, Chain, KernelError, Reduce
from h5par.parallel.agreement import collective_errors
from h5par.parallel.comm import allgather, bcast_array, rank, size

if TYPE_CHECKING:
    from h5par.parallel.comm import Comm

__all__ = ["execute"]


def execute(work: Work, plan: Plan, comm: Comm) -> tuple[dict[str, dict[str, Any]], Record]:
    """Run the data pass of ``plan`` and put its output in place. Collective over comm."""
    journal, lock, opened = open_journal(work, plan, comm)
    if journal is None:  # statistics only: no work folder, nothing to finalize
        reductions, record = _data_phase(work, plan, NO_JOURNAL, comm)
        _last_failure_point(comm)
        return reductions, record
    with lock or contextlib.nullcontext():  # rank 0 holds the work folder until it is done
        try:
            try:
                reductions, record = _data_phase(work, plan, journal, comm, opened)
            finally:  # closed by the data pass unless it failed first
                if opened is not None:
                    with contextlib.suppress(Exception):
                        opened.close()
            _last_failure_point(comm)
            with collective_errors(comm, "finalize"):  # only rank 0 acts: no failure after it
                if rank(comm) == 0:
                    finalize(work, plan, journal)
        except StoppedError:  # agreed by every rank, each has closed the file
            if work.in_place:
                allgather(comm, None)  # ... every rank: the file is as the run leaves it
                if rank(comm) == 0:
                    left_as_is(work, journal)
            raise  # the work folder stays: the next run resumes from it
        except Exception as exc:
            note = partly_updated(work, journal)
            if note is None and rank(comm) == 0:
                journal.remove()
            if note is not None and isinstance(exc, H5ParError):
                exc.args = (f"{exc}; {note}",)
            elif note is not None:
                raise H5ParError(f"{type(exc).__name__}: {exc}; {note}") from exc
            raise
    return reductions, record


def _last_failure_point(comm: Comm) -> None:
    """Agree once more after the data pass: the last point where any rank may still fail."""
    with collective_errors(comm, "finalize", fault="finalize"):
        pass


# Phase 2: the data pass.


def _data_phase(
    work: Work, plan: Plan, journal: Journaling, comm: Comm, opened: Opened | None = None
) -> tuple[dict[str, dict[str, Any]], Record]:
    """Every dataset's pass; ``opened``: the input and output rank 0 created, still open."""
    mode = "r+" if work.in_place else "r"
    reductions: dict[str, dict[str, Any]] = {}
    record = Record()
    with collective_errors(comm, "open", fault="open"):
        driver = _read_driver(work, plan, size(comm))
        fin = opened.src if opened else File(work.input, mode, comm, driver, **work.driver_options)
    with fin:
        fout = fin if work.in_place else None
        if work.output is not None:
            with collective_errors(comm, "open output"):
                fout = opened.dst if opened else _open_output(work, plan, _kept(journal), comm)
        try:
            for group in batches(work, plan.targets, size(comm)):
                if len(group) > 1:
                    assert fout is not None
                    process_batch(work, group, fin, fout, comm, journal, record)
                    continue
                (target,) = group
                dout = None if fout is None else fout[target.path]
                din = _open_input(work, fin, target)
                result = _process(work, target, din, dout, comm, journal, record)
                if result:
                    reductions[target.path] = result
            for copy in plan.copies:  # only with an output file
                assert fout is not None
                chain = work.chain_for(copy)
                din, dout = _open_input(work, fin, copy), fout[copy.path]
                run_pass(
                    sweep_of(work, copy, chain, comm, din, dout, journal=journal, record=record)
                )
            if plan.derived:  # only with an output file
                assert fout is not None
                driver = _read_driver(work, plan, size(comm))
                reductions.update(
                    run_derived(work, plan.derived, (fin, fout), driver, comm, journal, record)
                )
            if work.in_place:
                with collective_errors(comm, "attributes"):  # the same values on every rank
                    write_metadata(fin, plan.attrs, work.provenance, work.history)
        except BaseException:
            if fout is not None and fout is not fin:
                with contextlib.suppress(Exception):  # report the first error, not the close's
                    fout.close()
            raise
        if fout is not None and fout is not fin:
            fout.close()
    return reductions, record


def _open_input(work: Work, fin: h5py.File, target: Target) -> h5py.Dataset:
    """The input dataset of ``target``, its chunk cache sized for the units (plan.input_cache)."""
    return open_dataset(fin, target.path, input_cache(target, work.chain_for(target), work.budget))


def _kept(journal: Journaling) -> Journal:
    """The journal of a run that writes (a new output, or in place): one with a work folder."""
    assert isinstance(journal, Journal), "a run that writes keeps a journal"
    return journal


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
    virtual = any(t.virtual for t in all_targets(plan))
    if work.driver == "auto" and nranks > 1 and (virtual or not h5py.get_config().mpi):
        return "sec2"
    return work.driver


def _process(
    work: Work,
    target: Target,
    din: h5py.Dataset,
    dout: h5py.Dataset | None,
    comm: Comm,
    journal: Journaling,
    record: Record,
) -> dict[str, Any]:
    chain = _prepare(work, target, din, comm, journal)
    parts = run_pass(sweep_of(work, target, chain, comm, din, dout, journal=journal, record=record))
    return statistics(chain, parts, target.dtype)


# What kernels need before the data pass.


def _prepare(
    work: Work, target: Target, din: h5py.Dataset, comm: Comm, journal: Journaling
) -> Chain:
    """Bind what kernels need before the data pass: broadcast sources, histogram ranges.

    In-place runs keep both in the journal: a resumed run must not compute them from data
    the stopped run already overwrote.
    """
    chain = work.chain
    keep = _kept(journal) if work.in_place else None
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
        raw = read_target(target, din, index if me == 0 and fresh else None)
        if me == 0 and not fresh:
            assert kept is not None
            source[...] = np.load(kept, allow_pickle=False)
        elif me == 0:
            source[...] = chain.prefix(position).apply(raw, index, target.fill)[0]
            if kept is not None:
                np.save(kept, source, allow_pickle=False)
    bcast_array(comm, source)
    return source


def _range_probe(chain: Chain, position: int) -> Chain:
    """The chain whose one global reduction is the min/max of the data entering ``position``.

    The kernels before it transform the data, global reductions among them are left out
    (their statistics come from the main pass); a closing reduction along axes stays, so
    that the pre-pass reads the input as the main pass does (by output blocks).
    """
    kernel = chain.kernels[position]
    assert isinstance(kernel, Reduce)
    before = [k for k in chain.prefix(position).kernels if not isinstance(k, Reduce)]
    closing = [] if chain.axis_reducer is None else [chain.axis_reducer]
    return Chain((*before, Reduce(op=["min", "max"], skipna=kernel.skipna), *closing))


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
    (part,) = run_pass(sweep_of(work, target, _range_probe(chain, position), comm, din))
    if part.count == 0:
        low, high = 0, 1  # numpy's range for empty input
    elif not (np.isfinite(part.min) and np.isfinite(part.max)):
        raise KernelError(
            f"reduce histogram of {target.path}: the data range [{part.min}, {part.max}] is not finite; set skipna = true or range = [low, high]"
        )
    else:
        low, high = part.min, part.max
    if keep is not None:
        keep.keep_range(target.path, position, low, high)
    return low, high
