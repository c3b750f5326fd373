"""The work folder of a run: start or resume it, build the output's structure, finalize.

Phase 1 of :func:`h5par.execute.execute` (rank 0): resume the work folder of an earlier
run of the same job, or start a new one; for a new output, build its structure there
(groups, attributes, links, untouched datasets copied, processed datasets created empty,
or virtual over the part files of a subfiled output). Phase 3 (rank 0): userblock bytes,
the parts and the temporary output moved into place, the work folder removed.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Any

import h5py

from .comm import bcast, rank
from .errors import UsageError, collective_errors
from .faults import inject
from .hierarchy import build_output, reattach_scales
from .io import open_input
from .journal import Journal, fingerprint, in_use, work_folder
from .subfiles import parts_folder, virtual_dataset
from .targets import Plan, Target, Work, units

if TYPE_CHECKING:
    from .comm import Comm

__all__ = ["PARTS", "all_targets", "finalize", "open_journal", "partly_updated"]

#: The work folder's subfolder of part files (subfiled output).
PARTS = "parts"


def partly_updated(work: Work, journal: Journal) -> str | None:
    """In place, once data has changed: what to tell the user (the journal is kept)."""
    done, total = journal.count()
    if not work.in_place or not (done or journal.staged):
        return None
    return (
        f"{work.input} is partly updated ({done} of {total} units): rerun the same job to "
        f"finish it (journal in {journal.folder})"
    )


def open_journal(work: Work, plan: Plan, comm: Comm) -> Journal | None:
    """Rank 0 resumes or starts the work folder; every rank gets the journal. Collective."""
    if work.destination is None:
        return None  # statistics only: nothing is written, a rerun starts over
    journal = None
    try:
        with collective_errors(comm, "create output"):
            journal = _resume_or_start(work, plan) if rank(comm) == 0 else None
            inject("create")
    except Exception:
        if journal is not None and partly_updated(work, journal) is None:
            journal.remove()  # rank 0 started it, another rank failed
        raise
    journal = bcast(comm, journal)
    assert journal is not None
    return journal


def _resume_or_start(work: Work, plan: Plan) -> Journal:
    assert work.destination is not None
    folder = work_folder(work.destination)
    stamp = _fingerprint(work, plan)
    old = Journal.load(folder)
    if old is not None and old.fingerprint == stamp and (work.in_place or _readable(old)):
        return old
    if work.in_place and old is not None and (old.count()[0] or old.staged):
        raise UsageError(
            f"{work.input} is partly updated by an unfinished in-place run of another job "
            f"(journal in {folder}): rerun that job to finish it, or delete {folder} to keep "
            "the partial update"
        )
    if work.resume:
        why = "no earlier run was stopped" if old is None else "the job or the input changed"
        raise UsageError(f"--resume: nothing to resume for {work.destination} ({why})")
    if in_use(folder):
        raise UsageError(f"another h5par run is working in {folder}")
    journal = Journal(folder, stamp)
    journal.remove()
    try:
        folder.mkdir()
    except OSError as exc:
        raise UsageError(f"output folder {str(folder.parent)!r} is not writable: {exc}") from None
    journal.units = {
        t.path: len(units(t, work.chain_for(t), work.budget)) for t in all_targets(plan)
    }
    if work.output is not None:
        try:
            _create_output(work, plan, journal)
        except BaseException:
            journal.remove()
            raise
    journal.save()
    return journal


def _fingerprint(work: Work, plan: Plan) -> str:
    identity = {} if work.in_place else plan.identity  # an in-place run changes both
    return fingerprint(
        {
            "input": str(work.input.resolve()),
            "identity": identity,
            "output": None if work.output is None else str(work.output.resolve()),
            "chain": repr(work.chain),
            "budget": work.budget,
            "options": repr(work.options),
            "driver": [work.driver, work.driver_options],
            "respect_fill_value": work.respect_fill_value,
            "targets": repr(all_targets(plan)),
            "parts": work.nranks if work.options.subfiled else None,
        }
    )


def all_targets(plan: Plan) -> list[Target]:
    """The datasets a run writes: processed ones and large untouched ones copied."""
    return [*plan.targets, *plan.copies]


def _readable(journal: Journal) -> bool:
    """True when the temporary output of a killed run still opens (its structure is intact)."""
    try:
        with h5py.File(journal.output, "r"):
            return True
    except OSError:
        return False


def _create_output(work: Work, plan: Plan, journal: Journal) -> None:
    order = plan.track_order or None
    with (
        open_input(work.input, work.driver, work.driver_options) as src,
        h5py.File(
            journal.output, "w", userblock_size=plan.userblock or None, track_order=order
        ) as dst,
    ):
        build_output(src, dst, {t.path: _create(work, t) for t in all_targets(plan)})
        for t in plan.targets:
            if t.out_fill is not None and t.out_dtype != t.dtype:
                dst[t.path].attrs.create("_FillValue", t.out_fill, dtype=t.out_dtype)
            if t.select is not None or t.out_shape != t.shape:
                reattach_scales(dst[t.path], _kept_axes(t))
        dst.attrs.update(work.provenance)


def _create(work: Work, target: Target) -> dict[str, Any]:
    """How ``target`` is created in the output: empty, or virtual over the part files."""
    if not work.options.subfiled:
        return target.create
    assert work.output is not None
    blocks = units(target, work.chain_for(target), work.budget)
    return virtual_dataset(target, blocks, work.nranks, work.output)


def _kept_axes(target: Target) -> list[tuple[int, int]]:
    """``(output axis, input axis)`` of the input's axes the output keeps whole.

    A selection keeps the axes it takes whole, a reduction the axes it does not remove, a
    reshape none.
    """
    if target.axes:
        survivors = [a for a in range(len(target.shape)) if a not in target.axes]
    elif target.out_shape != target.shape:
        return []
    else:
        survivors = list(range(len(target.shape)))
    whole = {a: a for a in range(len(target.shape))}
    if target.select is not None:
        whole = {new: old for new, old, entire in target.select.kept() if entire}
    return [(out, whole[a]) for out, a in enumerate(survivors) if a in whole]


def finalize(work: Work, plan: Plan, journal: Journal) -> None:
    """Put the output (and its parts) in place and remove the work folder (rank 0)."""
    if work.output is not None:
        if work.options.subfiled:  # the parts first: the output names them
            parts = parts_folder(work.output)
            shutil.rmtree(parts, ignore_errors=True)
            os.replace(journal.folder / PARTS, parts)
        if plan.userblock:
            with open(work.input, "rb") as src, open(journal.output, "r+b") as dst:
                dst.write(src.read(plan.userblock))
        os.replace(journal.output, work.output)
    journal.remove()
