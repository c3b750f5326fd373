"""The work folder of a run: start or resume it, build the output's structure, finalize.

Phase 1 of :func:`h5par.engine.execute.execute` (rank 0): resume the work folder of an earlier
run of the same job, or start a new one; for a new output, build its structure there
(groups, attributes, links, untouched datasets copied, processed datasets created empty,
or virtual over the part files of a subfiled output). Phase 3 (rank 0): userblock bytes,
the parts and the temporary output moved into place, the work folder removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import h5py

from h5par.core.decomposition import Index
from h5par.core.dimensions import whole_axes
from h5par.core.units import Target
from h5par.engine.config import Work
from h5par.engine.derived import Derived
from h5par.engine.journal import (
    DamagedJournalError,
    Journal,
    fingerprint,
    stat_identity,
    work_folder_of,
)
from h5par.engine.lock import BusyError, Lock, holder, take
from h5par.engine.plan import Plan, units
from h5par.engine.series import check_unchanged, remove_joined
from h5par.engine.series import identity as series_identity
from h5par.errors import H5ParError, UsageError
from h5par.hdf5.allocation import allocate_missing
from h5par.hdf5.attributes import write_metadata
from h5par.hdf5.dimensions import (
    attach_dimensions,
    create_derived,
    netcdf_coordinates,
    sliced_scales,
)
from h5par.hdf5.hierarchy import build_output, reattach_scales
from h5par.hdf5.io import open_input
from h5par.hdf5.subfiles import parts_folder, virtual_dataset
from h5par.kernels import Chain
from h5par.kernels.user import PythonKernel, function_name
from h5par.parallel.agreement import collective_errors
from h5par.parallel.comm import bcast, rank, size
from h5par.parallel.faults import inject

if TYPE_CHECKING:
    from h5par.parallel.comm import Comm

__all__ = [
    "PARTS",
    "Opened",
    "Started",
    "all_targets",
    "check_input_settled",
    "clear_finished",
    "finalize",
    "kernel_code",
    "left_as_is",
    "open_journal",
    "partly_updated",
]

#: The work folder's subfolder of part files (subfiled output).
PARTS = "parts"


def partly_updated(work: Work, journal: Journal) -> str | None:
    """In place, once data has changed: what to tell the user (the journal is kept)."""
    if not work.in_place or not journal.changed:
        return None
    done, total = journal.count()
    return (
        f"{work.input} is partly updated ({done} of {total} units): rerun the same job to "
        f"finish it (journal in {journal.folder})"
    )


class Opened(NamedTuple):
    """The input and the new output a run on one process keeps open from their creation.

    The data pass writes into the very file the structure was built in (flushed, not
    closed): two HDF5 opens and closes fewer per output, which is most of a small file's cost.
    """

    src: h5py.File
    dst: h5py.File

    def close(self) -> None:
        """Close both files (each closes once: h5py ignores closing a closed file)."""
        try:
            self.dst.close()
        finally:
            self.src.close()


class Started(NamedTuple):
    """What :func:`open_journal` gives: the journal, rank 0's lock, the files kept open."""

    journal: Journal | None
    lock: Lock | None
    opened: Opened | None = None


def open_journal(work: Work, plan: Plan, comm: Comm) -> Started:
    """Rank 0 locks and resumes or starts the work folder; every rank gets the journal.

    Returns the journal and, on rank 0, the work folder's lock, to be released once the
    output is in place (or the run failed or stopped), and on one process the input and
    the new output it created, still open (:class:`Opened`). Collective.
    """
    if work.destination is None:
        return Started(None, None)  # statistics only: nothing is written, a rerun starts over
    started = Started(None, None)
    try:
        with collective_errors(comm, "create output"):
            if rank(comm) == 0:
                started = _resume_or_start(work, plan, keep=size(comm) == 1)
            inject("create")  # after rank 0's work (not on entry): a failure here removes it
    except Exception:
        journal, lock, opened = started
        if opened is not None:
            with contextlib.suppress(Exception):
                opened.close()
        if journal is not None and not journal.done and partly_updated(work, journal) is None:
            journal.remove()  # rank 0 started it, another rank failed (a resumed one stays)
        if lock is not None:
            lock.release()
        raise
    journal = bcast(comm, started.journal)
    assert journal is not None
    return started._replace(journal=journal)


def _resume_or_start(work: Work, plan: Plan, keep: bool) -> Started:
    """Lock the work folder (refused while another run holds it), then resume or start.

    ``keep``: a new output's files stay open for the data pass (one process, not subfiled).
    """
    assert work.destination is not None
    folder = work_folder_of(work.destination, work.in_place)
    lock = take(folder)
    try:
        journal, opened = _resume_or_start_locked(work, plan, folder, keep)
    except BaseException:
        lock.release()
        raise
    return Started(journal, lock, opened)


def _resume_or_start_locked(
    work: Work, plan: Plan, folder: Path, keep: bool
) -> tuple[Journal, Opened | None]:
    boxes = {t.path: units(t, work.chain_for(t), work.budget) for t in all_targets(plan)}
    stamp = _fingerprint(work, plan, boxes)
    old = _load(work, folder)
    if old is not None and old.fingerprint == stamp and (work.in_place or _readable(old)):
        journal = _resumed(work, old)
        _allocate_for_ranks(work, plan, journal)
        return journal, None
    if work.in_place and old is not None and old.changed:
        raise UsageError(
            f"{work.input} is partly updated by an unfinished in-place run of another job "
            f"(or the job's kernel code, the file, or the version of h5par changed since; journal in {folder}): "
            "rerun that job with the same code to finish it (deleting the journal leaves "
            "the file half updated)"
        )
    if work.resume:
        why = "no earlier run was stopped" if old is None else "the job or the input changed"
        raise UsageError(f"--resume: nothing to resume for {work.destination} ({why})")
    _check_not_done_meanwhile(work)
    _check_plan_current(work, plan)
    journal = Journal(folder, stamp, job=work.provenance.get("h5par_job_sha256", ""))
    journal.clear()
    journal.read = {} if work.in_place else stat_identity(work.input)
    journal.units = {path: len(blocks) for path, blocks in boxes.items()}
    opened = None
    if work.output is not None:
        try:
            opened = _create_output(work, plan, journal, keep and not work.options.subfiled)
        except BaseException:
            journal.clear()
            raise
    else:
        _allocate_for_ranks(work, plan, journal)
    try:
        journal.save(durable=work.in_place)
    except BaseException:
        if opened is not None:
            opened.close()
        raise
    return journal, opened


def _load(work: Work, folder: Path) -> Journal | None:
    """The journal of an earlier run in ``folder``; a damaged one is refused in place.

    In place, units the damaged part recorded as finished would be transformed again
    (their staged data is gone). A new output is built again from the input instead.
    """
    try:
        return Journal.load(folder)
    except DamagedJournalError as exc:
        if work.in_place:
            raise DamagedJournalError(
                f"{exc}: {work.input} may be partly updated and the journal no longer says "
                "which units; restore the file from a copy, then delete the work folder"
            ) from exc
        return None


def _resumed(work: Work, journal: Journal) -> Journal:
    """The journal of a stopped run to resume, once its in-place file is known unchanged."""
    if work.in_place and journal.left:
        if journal.left != stat_identity(work.input):
            raise UsageError(
                f"{work.input} was changed since its in-place run stopped (size, times or "
                f"inode differ; journal in {journal.folder}): restore the file as that run "
                "left it and rerun to finish; if you replaced it with unprocessed data on "
                f"purpose, delete {journal.folder} to start over"
            )
        journal.left = {}  # this run changes the file: its own stop records it again
    journal.save(durable=work.in_place)  # its log folded in: a cut line is not appended to
    return journal


def _allocate_for_ranks(work: Work, plan: Plan, journal: Journal) -> None:
    """Give every chunk of the datasets several ranks will write storage (rank 0, locked).

    Partly written chunked datasets (an output one rank started, an in-place input with
    holes) hang HDF5 1.10 when several ranks write them (:mod:`h5par.hdf5.allocation`).
    A new output needs nothing: HDF5 allocates its empty datasets when ranks open it.
    """
    if work.nranks < 2 or work.options.subfiled:
        return
    path = work.input if work.in_place else journal.output
    with h5py.File(path, "r+") as f:
        for target in all_targets(plan):
            allocate_missing(f[target.path])


def left_as_is(work: Work, journal: Journal) -> None:
    """Record how a stopped in-place run leaves its file (rank 0, every rank closed it)."""
    if work.in_place:
        with contextlib.suppress(OSError):
            journal.left = stat_identity(work.input)
            journal.save()


def _check_not_done_meanwhile(work: Work) -> None:
    """Refuse a fresh start, under the lock, when another run finished the output meanwhile.

    The checks before the lock (output exists, file already done by this job) ran while that
    run still worked; starting now would replace its output without ``overwrite`` or, in
    place, apply the job a second time.
    """
    if work.overwrite:
        return
    if work.output is not None and work.output.exists():
        raise UsageError(
            f"output {str(work.output)!r} exists: another run finished it meanwhile "
            f"({work.overwrite_hint} to replace it)"
        )
    digest = work.provenance.get("h5par_job_sha256")
    if work.in_place and digest is not None and _job_digest(work) == digest:
        raise UsageError(
            f"{str(work.input)!r} was completed by another run of this job meanwhile "
            f"(nothing to do; {work.overwrite_hint} to apply the job again)"
        )


def _job_digest(work: Work) -> Any:
    """The job digest an earlier h5par run recorded in the input (None if none)."""
    try:
        with h5py.File(work.input, "r") as f:
            return f.attrs.get("h5par_job_sha256")
    except OSError:
        return None


def _fingerprint(work: Work, plan: Plan, boxes: dict[str, list[Index]]) -> str:
    """The digest of everything the result depends on, as explicit values (no ``repr``).

    ``boxes`` are the unit boxes of every target (:func:`~h5par.engine.plan.units`).
    """
    return fingerprint(
        {
            "input": str(work.input.resolve()),
            "identity": _input_identity(work),
            "output": None if work.output is None else str(work.output.resolve()),
            "chain": work.chain,
            "code": kernel_code(work.chain, work.derived),
            "budget": work.budget,
            "options": work.options,
            "driver": [work.driver, work.driver_options],
            "respect_fill_value": work.respect_fill_value,
            "attrs": work.attrs,
            "derived": work.derived,
            "references": {str(f): stat_identity(f) for d in work.derived for f in d.files},
            "targets": all_targets(plan),
            "units": _units_digest(boxes),
            "parts": work.nranks if work.options.subfiled else None,
        }
    )


def _units_digest(boxes: dict[str, list[Index]]) -> str:
    """A digest of every target's unit boxes: a journal's unit numbers mean these boxes.

    A resume by code that cuts units otherwise (another version of h5par) starts over
    instead of taking unit numbers for other boxes.
    """
    plain = {p: [[[s.start, s.stop] for s in box] for box in u] for p, u in boxes.items()}
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()


def _input_identity(work: Work) -> dict[str, Any]:
    """What tells the input apart from a replacement (``cp -p``, ``rsync -t`` keep times).

    A new output: size, modification and change times, inode. In place the run itself
    changes the times: the inode only. Never the device number, which differs between
    the nodes mounting one NFS file system. A series: those of every file.
    """
    if work.series is not None:
        return {"series": series_identity(work.series)}
    identity = stat_identity(work.input)
    return {"inode": identity["inode"]} if work.in_place and identity else identity


def kernel_code(chain: Chain, derived: tuple[Derived, ...]) -> list[list[str | None]]:
    """``[function, sha256 of its module's file]`` of each user function a run calls.

    ``python`` kernels of ``chain`` and of the derived datasets, and the functions of the
    derived datasets. Editing a function's module between a stop and a resume changes the
    fingerprint: units computed by the old code are not mixed with units of the new.
    """
    names = [k.label for k in chain.kernels if isinstance(k, PythonKernel)]
    for spec in derived:
        names += [k.label for k in spec.chain.kernels if isinstance(k, PythonKernel)]
        if spec.derivation.function is not None:
            names.append(function_name(spec.derivation.function))
    code: list[list[str | None]] = []
    for name in names:
        module = sys.modules.get(name.partition(":")[0])
        code.append([name, _file_digest(getattr(module, "__file__", None))])
    return code


def _file_digest(path: str | None) -> str | None:
    if path is None:
        return None  # a built-in module: it changes with Python only
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise UsageError(
            f"kernel 'python': cannot read its module {path!r}: {exc.strerror}"
        ) from exc


def all_targets(plan: Plan) -> list[Target]:
    """The datasets a run writes: processed ones, large untouched ones copied, derived ones."""
    return [*plan.targets, *plan.copies, *plan.derived]


def _readable(journal: Journal) -> bool:
    """True when the temporary output of a killed run still opens (its structure is intact)."""
    try:
        with h5py.File(journal.output, "r"):
            return True
    except OSError:
        return False


def _create_output(work: Work, plan: Plan, journal: Journal, keep: bool) -> Opened | None:
    """Build the new output's structure in the work folder; ``keep``: leave both files open."""
    with contextlib.ExitStack() as files:
        src = files.enter_context(open_input(work.input, work.driver, work.driver_options))
        order, userblock = plan.track_order or None, plan.userblock or None
        dst = files.enter_context(
            h5py.File(journal.output, "w", userblock_size=userblock, track_order=order)
        )
        _build(work, plan, src, dst)
        if keep:
            dst.flush()  # the structure is in the file, as a close would leave it
            files.pop_all()
            return Opened(src, dst)
    return None


def _build(work: Work, plan: Plan, src: h5py.File, dst: h5py.File) -> None:
    """The output's hierarchy, empty datasets, dimension scales and attributes."""
    creates = {t.path: _create(work, t) for t in all_targets(plan)}
    build_output(src, dst, {**creates, **sliced_scales(src, plan.dimensions)}, plan.keep)
    reshaped = [t.path for t in plan.targets if t.select is not None or t.out_shape != t.shape]
    for t in plan.targets:
        if t.out_fill is not None and t.out_dtype != t.dtype:
            dst[t.path].attrs.create("_FillValue", t.out_fill, dtype=t.out_dtype)
        if t.path in reshaped:
            reattach_scales(dst[t.path], whole_axes(t))
    attach_dimensions(src, dst, plan.dimensions)
    netcdf_coordinates(dst, reshaped)
    for t in plan.derived:
        create_derived(src, dst, t, creates[t.path])
    write_metadata(dst, plan.attrs, work.provenance, work.history)


def _create(work: Work, target: Target) -> dict[str, Any]:
    """How ``target`` is created in the output: empty, or virtual over the part files."""
    if not work.options.subfiled:
        return target.create
    assert work.output is not None
    blocks = units(target, work.chain_for(target), work.budget)
    return virtual_dataset(target, blocks, work.nranks, work.output)


def finalize(work: Work, plan: Plan, journal: Journal) -> None:
    """Put the output (and its parts) in place and remove the work folder (rank 0)."""
    if work.output is not None:
        _check_input_unchanged(work, journal)
        if work.options.subfiled:  # the parts first: the output names them
            parts = parts_folder(work.output)
            shutil.rmtree(parts, ignore_errors=True)
            os.replace(journal.folder / PARTS, parts)
        if plan.userblock:
            with open(work.input, "rb") as src, open(journal.output, "r+b") as dst:
                dst.write(src.read(plan.userblock))
        os.replace(journal.output, work.output)
        if work.series is not None:
            remove_joined(work.output)
    journal.remove()


def _check_input_unchanged(work: Work, journal: Journal) -> None:
    """Refuse to publish an output whose input another process wrote while it was read.

    An in-place run of another job on the input, say: the output would mix old and new data.
    """
    if work.series is not None:
        assert work.output is not None
        check_unchanged(work.series, work.output, work.input)
    if journal.read and stat_identity(work.input) != journal.read:
        raise H5ParError(
            f"input {str(work.input)!r} changed while this run read it (size, times or inode "
            "differ from when it started; another process wrote it?): the output would mix "
            "old and new data and is not written; rerun once nothing else writes the input"
        )


def _check_plan_current(work: Work, plan: Plan) -> None:
    """Refuse a fresh start from a plan made before the input changed (rank 0, locked).

    ``h5par run`` inspects every input before the first is processed and reuses those
    plans; an input replaced meanwhile would be processed by the old file's plan. Checked
    after the lock and :func:`_check_not_done_meanwhile`: an in-place run of the same job
    that changed the file meanwhile is told apart first.
    """
    if plan.source != stat_identity(work.input):
        raise H5ParError(
            f"{work.input} changed after the job checked it (size, times or inode differ): "
            "its plan is out of date; rerun the job (finished files are skipped)"
        )


def clear_finished(destination: Path, in_place: bool, job: str) -> None:
    """Remove the work folder a run of job ``job`` killed while finalizing left (rank 0).

    For a file that run completed (:func:`~h5par.engine.batch.finished_file`): its journal
    has every unit done, only the folder's removal was left. Kept, a later run of the job
    on a file regenerated under the same name (in place: the same inode) would resume it
    as finished and process nothing. A folder another run holds, of another job (a stopped
    run to resume), or whose journal is not complete, stays.
    """
    folder = work_folder_of(destination, in_place)
    if not job or not folder.is_dir():
        return
    try:
        lock = take(folder)
    except UsageError:  # another run works there (BusyError), or the lock cannot be taken
        return
    with lock:
        try:
            journal = Journal.load(folder)
        except DamagedJournalError:
            return
        if journal is not None and journal.job == job:
            done, total = journal.count()
            if done == total:
                journal.remove()


def check_input_settled(work: Work) -> None:
    """Refuse to read an input an in-place run is changing or left partly updated (rank 0).

    The output would silently mix the old and the new data of its units.
    """
    if work.in_place or not work.input.is_file():
        return
    folder = work_folder_of(work.input, True)
    owner = holder(folder)
    if owner is not None:
        raise BusyError(
            f"input {str(work.input)!r} is being changed in place by another h5par run "
            f"({owner.describe(folder)}): wait until it ends"
        )
    journal = Journal.load(folder)
    if journal is not None and journal.changed:
        done, total = journal.count()
        raise UsageError(
            f"input {str(work.input)!r} is partly updated by a stopped in-place run ({done} of "
            f"{total} units; journal in {str(folder)!r}): rerun that job to finish it first"
        )
