"""Many small datasets in few steps: each rank takes a share of a batch, one checkpoint each.

A dataset of one unit costs a sweep of one step (:mod:`h5par.engine.sweep`): four
agreements, a flush and a journal record, and on several ranks only one of them works.
With thousands of small datasets (stations as groups, one dataset per variable) that
dominates. Consecutive small datasets therefore form *batches*: the ranks share a batch
out by bytes (largest first to the least loaded rank), each processes its datasets whole,
one after the other, and the batch ends in one agreement, one flush and one journal
record for all of them.

A dataset is batched when it is one unit of at most :data:`SMALL_BYTES` that needs
nothing before its pass (no reductions, broadcast sources or histogram ranges) and is
written independently: not in place (staging keeps a unit's new data before it is
written), not subfiled, and on several ranks not filtered (HDF5 writes filtered datasets
collectively). On one rank the output is opened through sec2, filters included. Every rank opens every output dataset of a batch, in the same order: under
mpio, HDF5 allocates a dataset's storage when it is opened, a change of the file's
metadata every rank must make.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import h5py

from h5par.core.decomposition import spread
from h5par.core.units import Target, describe, read_bytes
from h5par.engine.config import Work
from h5par.engine.journal import Journaling
from h5par.engine.plan import units
from h5par.engine.sweep import Record, Sweep, flush, sweep_of
from h5par.errors import StoppedError
from h5par.hdf5.io import open_dataset
from h5par.kernels import Broadcast, Reduce
from h5par.parallel import guard
from h5par.parallel.agreement import collective_errors
from h5par.parallel.comm import rank, size

if TYPE_CHECKING:
    from h5par.parallel.comm import Comm

__all__ = ["BATCH_BYTES", "BATCH_DATASETS", "SMALL_BYTES", "batches", "process_batch"]

#: A dataset of one unit and at most this many bytes read is small.
SMALL_BYTES = 4 << 20
#: A batch holds at most this many datasets ...
BATCH_DATASETS = 512
#: ... and at most this many bytes read per rank.
BATCH_BYTES = 64 << 20


def batches(work: Work, targets: Sequence[Target], nranks: int) -> Iterator[list[Target]]:
    """``targets`` in order, in groups: a batch of small ones, or one dataset alone.

    A batch closes at :data:`BATCH_DATASETS` datasets or :data:`BATCH_BYTES` per rank, and
    at any dataset that cannot join one.
    """
    batch: list[Target] = []
    held = 0
    for target in targets:
        nbytes = _small(work, target, nranks)
        full = len(batch) == BATCH_DATASETS or held + (nbytes or 0) > BATCH_BYTES * nranks
        if batch and (nbytes is None or full):
            yield batch
            batch, held = [], 0
        if nbytes is None:
            yield [target]
        else:
            batch.append(target)
            held += nbytes
    if batch:
        yield batch


def _small(work: Work, target: Target, nranks: int) -> int | None:
    """The bytes ``target`` reads when it can go in a batch, else None."""
    chain = work.chain_for(target)
    needs = any(isinstance(k, (Broadcast, Reduce)) for k in chain.kernels)
    alone = work.in_place or work.options.subfiled or (nranks > 1 and target.filtered)
    if needs or alone or target.axes or work.output is None:
        return None
    blocks = units(target, chain, work.budget)
    if len(blocks) != 1:
        return None
    nbytes = read_bytes(target, blocks[0])
    return nbytes if nbytes <= SMALL_BYTES else None


def process_batch(
    work: Work,
    batch: Sequence[Target],
    fin: h5py.File,
    fout: h5py.File,
    comm: Comm,
    journal: Journaling,
    record: Record,
) -> None:
    """Process a batch of small datasets (:func:`batches`), each whole on one rank.

    Collective over comm: one agreement for the batch's work, one flush and one journal
    record once it is done; a stop asked meanwhile ends the run after that record.
    """
    todo = [t for t in batch if journal.remaining(t.path, 1)]
    for target in batch:
        record.shares[target.path] = describe(rank(comm), [], 0)
    record.resumed += len(batch) - len(todo)
    if not todo:  # the same on every rank: the journal is
        return
    # Every rank opens every output, in order: mpio allocates storage at open.
    outputs = [open_dataset(fout, t.path, None) for t in todo]
    sizes = [_small(work, t, size(comm)) or 0 for t in todo]  # each one small: batched
    mine = _shares(sizes, size(comm))[rank(comm)]
    phase = f"processing {len(todo)} small datasets ({todo[0].path} ...)"
    with collective_errors(comm, phase, fault=Sweep.FAULTS) as agreed:
        for k in mine:
            target = todo[k]
            guard.beat(f"processing {target.path}")
            chain, din = work.chain_for(target), open_dataset(fin, target.path, None)
            sweep = sweep_of(work, target, chain, comm, din, journal=journal)
            # Set afterwards: sweep_of would ask for the output's transfer properties, and
            # h5py's File.driver is collective under mpio (H5Fget_access_plist duplicates
            # the communicator), here on one rank alone. Independent writes: see above.
            sweep.dout = outputs[k]
            tick = time.perf_counter()
            sweep.put(sweep.blocks[0], sweep.compute(0, sweep.read(0)))
            sweep.busy += time.perf_counter() - tick
            sweep.plan = [[0] if r == rank(comm) else [] for r in range(size(comm))]
            sweep.record = record
            sweep.finish()  # its counters and share into the record; nothing to commit
    _checkpoint(todo, fout, comm, journal)
    if work.progress is not None and rank(comm) == 0:
        work.progress(sum(sizes))
    if agreed.stop:
        raise StoppedError(journal.stop_message(agreed.stop))


def _shares(sizes: Sequence[int], nranks: int) -> list[list[int]]:
    """Which datasets each rank processes, by their ``sizes``: largest first, greedily.

    >>> _shares([10, 40, 30, 20], 2), _shares([10, 40], 1)
    ([[0, 1], [2, 3]], [[0, 1]])
    """
    return spread(sizes, nranks)


def _checkpoint(todo: Sequence[Target], fout: h5py.File, comm: Comm, journal: Journaling) -> None:
    """Flush the output, then record the batch's datasets as finished. Collective."""
    with collective_errors(comm, f"checkpoint of {len(todo)} small datasets", fault="checkpoint"):
        flush(fout, comm)
    for target in todo:
        journal.finish(target.path, [0])
    with collective_errors(comm, "journal"):
        journal.checkpoint(write=rank(comm) == 0)
