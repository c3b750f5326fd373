"""Running a whole job: many input files, file-level and dataset-level parallelism.

Big files are processed by every rank together (dataset-level: each dataset split into
slabs); files smaller than ``run.file_parallel_below`` go whole to one rank each
(file-level), so a directory of small dumps keeps every rank busy. ``plan`` predicts
exactly what ``run`` does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py

from h5par.core.attributes import history_line
from h5par.core.decomposition import assign_files
from h5par.core.units import Target
from h5par.engine.config import Work, work_for
from h5par.engine.folders import new_folders
from h5par.engine.inspection import inspect_input
from h5par.engine.jobs import Job, JobFile, job_from_dict, load_job
from h5par.engine.journal import file_identity, fingerprint, work_folder_of
from h5par.engine.lock import check_free
from h5par.engine.plan import Plan, input_region, share, unit_note
from h5par.engine.progress import Progress, Relay, interval
from h5par.engine.runner import Result, plan_together, run_work
from h5par.engine.series import Series, label, planned, prepare, remove_joined
from h5par.engine.series import identity as series_identity
from h5par.engine.shared import check_shared
from h5par.engine.workfolder import clear_finished, kernel_code
from h5par.errors import JobProblemsError, UsageError
from h5par.hdf5.series import feeding_files
from h5par.hdf5.subfiles import parts_folder
from h5par.parallel.agreement import collective_errors
from h5par.parallel.comm import (
    allgather,
    bcast,
    hosts,
    private,
    rank,
    resolve_comm,
    self_comm,
    size,
)
from h5par.parallel.guard import guarded
from h5par.version import __version__

if TYPE_CHECKING:
    from h5par.parallel.comm import Comm

__all__ = ["FileResult", "JobResult", "finished_file", "finished_files", "plan_job", "run"]


@dataclasses.dataclass(frozen=True)
class FileResult:
    """One input file's outcome: who processed it and the engine's :class:`Result`."""

    index: int
    input: str
    ranks: list[int]
    result: Result
    skipped: bool = False  # an earlier run of the same job had completed it
    stored_bytes: int = 0  # what the output takes on disk (its parts too), after the run


@dataclasses.dataclass(frozen=True)
class JobResult:
    """Everything a job did, identical on every rank."""

    files: list[FileResult]
    nranks: int
    seconds: float
    started: str
    nhosts: int = 1


def run(
    job: Job | Mapping[str, Any] | str | os.PathLike[str],
    comm: Comm | None = None,
    overrides: Sequence[str] = (),
    overwrite: bool = False,
    quiet: bool = True,
    resume: bool = False,
    how_to_overwrite: str = "pass overwrite=True",
    *,
    command: str | None = None,
) -> JobResult:
    """Run a job (a :class:`Job`, a dict as TOML gives it, or a job file). Collective.

    This is the function ``h5par run`` calls; ``quiet=False`` shows progress on rank 0.
    A stopped or killed run of the same job is continued from its journal; ``resume=True``
    requires one (see :func:`h5par.apply`). ``how_to_overwrite`` is named, beside the
    job's ``output.overwrite``, in the error for an existing output (``h5par run`` gives
    ``"pass --overwrite"``). ``command`` is what the ``history`` line of every output
    says was run (``h5par run job.toml``; by default the call, ``h5par.run('job.toml')``).
    """
    comm = resolve_comm(comm)
    private(comm)  # before any file is opened: see h5par.parallel.comm.private
    command = command or f"h5par.run({_called_with(job)})"
    with collective_errors(comm, "validate"):
        job = _as_job(job, overrides)
        if overwrite:
            job = dataclasses.replace(job, overwrite=True)
    now = bcast(comm, datetime.datetime.now(datetime.UTC).replace(microsecond=0))
    with _joined_kept_for_resume(job, comm):
        return _run(job, comm, resume, quiet, how_to_overwrite, now, command)


@contextlib.contextmanager
def _joined_kept_for_resume(job: Job, comm: Comm) -> Iterator[None]:
    """Remove a series' joined file, and the folders made for it, when a run fails.

    Rank 0, when the run leaves nothing to resume: a stopped run (or one another run is
    working on) has its work folder, and the joined file stays for the resume.
    """
    output = job.files[0].output if job.series is not None and rank(comm) == 0 else None
    made = [] if output is None else new_folders(output.parent)
    try:
        yield
    except BaseException:
        if output is not None and not stopped_file(job, job.files[0]):
            remove_joined(output)
            for folder in reversed(made):  # those still empty
                with contextlib.suppress(OSError):
                    folder.rmdir()
        raise


def _run(
    job: Job,
    comm: Comm,
    resume: bool,
    quiet: bool,
    how_to_overwrite: str,
    now: datetime.datetime,
    command: str,
) -> JobResult:
    """:func:`run` once the job is valid. Collective."""
    started = now.isoformat()
    t0 = time.perf_counter()
    names = hosts(comm)
    inputs = list(job.series.sources) if job.series else [f.input for f in job.files]
    inputs += sorted({f for d in job.derived for f in d.files})  # read by every rank
    outputs = {
        f.output.parent: "input" if job.in_place else "output" for f in job.files if f.output
    }
    check_shared(inputs, outputs, comm, names, lambda: _digest(job))
    with collective_errors(comm, "inspect inputs"):
        finished = finished_files(job) if rank(comm) == 0 else []
        if rank(comm) == 0:
            _clear_finished(job, finished)
        if job.series is not None and rank(comm) == 0 and not finished[0]:
            prepare(job.series, job.files[0].input)
        sizes = _sizes(job) if rank(comm) == 0 else []
        stopped = [stopped_file(job, f) for f in job.files] if rank(comm) == 0 else []
    sizes, finished, stopped = bcast(comm, (sizes, finished, stopped))
    todo = [i for i, done in enumerate(finished) if not done]
    with collective_errors(comm, "validate"):
        if resume and len(job.files) > 1 and not any(stopped[i] for i in todo):
            raise UsageError(
                f"--resume: nothing to resume ({len(job.files) - len(todo)} of "
                f"{len(job.files)} files done, none stopped): run without --resume"
            )
    shared, own = _split(todo, sizes, size(comm), job.file_parallel_below)
    enabled = not quiet and rank(comm) == 0
    progress = Progress(sum(sizes[i] for i in todo), enabled=enabled, interval=interval())
    relay = Relay(progress, comm)  # counts the files other ranks process alone
    with collective_errors(comm, "validate", fault="validate"):  # every rank, every file
        provenance = _provenance(job, started)
        history = _history(job, now, command)
        works = {
            i: work_for(
                job, job.files[i], how_to_overwrite, resume=resume and (stopped[i] or len(job.files) == 1),
                nranks=size(comm) if i in shared else 1,
                provenance=provenance and {**provenance, "h5par_input": _identity(job, job.files[i])},
                progress=relay.update, history=history,
            )
            for i in todo
        }  # fmt: skip
    with guarded(job.watchdog):  # a rank stuck inspecting ends the job too
        plans = _plans(job, works, (shared, own), comm)
        results = _process(works, plans, (shared, own), comm, relay)
    results += [_skipped(job, i) for i, done in enumerate(finished) if done]
    progress.close()
    results = _with_stored_bytes(results, job.options.subfiled, comm)
    seconds = bcast(comm, time.perf_counter() - t0)
    ordered = sorted(results, key=lambda r: r.index)
    return JobResult(ordered, size(comm), seconds, started, len(set(names)))


def _digest(job: Job) -> str:
    """What the job does as this rank read it (not its files: :func:`check_shared` has those)."""
    parts = {f.name: getattr(job, f.name) for f in dataclasses.fields(job)}
    del parts["text"], parts["files"]  # comments; inputs found by globs
    return fingerprint(
        {
            **parts,
            "outputs": [f.output for f in job.files],
            "code": kernel_code(job.chain, job.derived),
        }
    )


def _split(
    todo: list[int], sizes: list[int], nranks: int, below: int
) -> tuple[list[int], list[list[int]]]:
    """The files all ranks share, and per rank the files it processes alone."""
    shared, own = assign_files([sizes[i] for i in todo], nranks, below)
    return [todo[i] for i in shared], [[todo[i] for i in files] for files in own]


def _provenance(job: Job, started: str) -> dict[str, str]:
    """The attributes every output of ``job`` records (its input's identity besides)."""
    if not job.provenance:
        return {}
    code = _code_digest(job)
    return {
        "h5par_version": __version__,
        "h5par_job_sha256": job.sha256,
        "h5par_job": job.text,
        "h5par_run_started": started,
        **({} if code is None else {"h5par_code_sha256": code}),
    }


def _code_digest(job: Job) -> str | None:
    """A digest of the modules of the job's own functions (None: it calls none)."""
    code = kernel_code(job.chain, job.derived)
    return hashlib.sha256(json.dumps(code).encode()).hexdigest() if code else None


def _history(job: Job, now: datetime.datetime, command: str) -> str | None:
    """The line every output's ``history`` gets (None with ``output.provenance = false``)."""
    return history_line(command, now, __version__) if job.provenance else None


def _called_with(job: Job | Mapping[str, Any] | str | os.PathLike[str]) -> str:
    """How a Python caller named the job: its file, or ``job`` for a dict or a Job."""
    return repr(os.fspath(job)) if isinstance(job, str | os.PathLike) else "job"


def _plans(
    job: Job, works: dict[int, Work], split: tuple[list[int], list[list[int]]], comm: Comm
) -> dict[int, Plan]:
    """Every input and output checked before any file is written: on the ranks that use them.

    Each rank inspects the files it processes alone (``split``: :func:`_split`'s), all
    at once, then every rank a share of each file they share
    (:func:`~h5par.engine.runner.plan_together`); a problem on any rank ends the run before
    anything is written. The plans are the runs' own (:func:`~h5par.engine.runner.run_work`
    does not inspect again). Collective over ``comm``.
    """
    shared, own = split
    plans: dict[int, Plan] = {}
    with collective_errors(comm, "check inputs"):
        for i in (shared if rank(comm) == 0 else []) + own[rank(comm)]:
            _check_not_busy(job, job.files[i])
        for i in own[rank(comm)]:
            plans[i] = inspect_input(works[i])
    return {**plans, **{i: plan_together(works[i], comm) for i in shared}}


def _process(
    works: dict[int, Work],
    plans: dict[int, Plan],
    split: tuple[list[int], list[list[int]]],
    comm: Comm,
    relay: Relay,
) -> list[FileResult]:
    """Shared files on every rank, one after the other; then each rank its own files.

    ``split`` is :func:`_split`'s. While ranks process their own files, ``relay`` brings
    their progress to rank 0; the number of messages each sent travels with the results.
    """
    shared, own = split

    def process(i: int, on: Comm, ranks: list[int]) -> FileResult:
        result = run_work(works[i], on, plans[i])
        series = works[i].series
        name = str(works[i].input) if series is None else label(series)
        return FileResult(i, name, ranks, _as_ranks(result, ranks))

    results = [process(i, comm, list(range(size(comm)))) for i in shared]
    mine: list[FileResult] = []
    with collective_errors(comm, "per-rank files", poll=relay.look):
        alone = self_comm()
        with relay.alone():
            mine += [process(i, alone, [rank(comm)]) for i in own[rank(comm)]]
    gathered = allgather(comm, (mine, len(relay.sent)))
    relay.settle([sent for _, sent in gathered])
    return results + [r for per_rank, _ in gathered for r in per_rank]


def _as_ranks(result: Result, ranks: list[int]) -> Result:
    """``result`` with its shares numbered by the job's ranks (a rank alone is its rank 0)."""
    if len(ranks) != 1 or ranks == [0]:
        return result
    decomposition = {
        path: [{**s, "rank": ranks[s["rank"]]} for s in shares]
        for path, shares in result.decomposition.items()
    }
    return dataclasses.replace(result, decomposition=decomposition)


def _with_stored_bytes(results: list[FileResult], subfiled: bool, comm: Comm) -> list[FileResult]:
    """``results`` with the size of each output on disk (rank 0 looks, one stat a file).

    Collective over ``comm``.
    """
    with collective_errors(comm, "output sizes"):
        stored = [_stored(r.result.output, subfiled) for r in results] if rank(comm) == 0 else []
    stored = bcast(comm, stored)
    return [dataclasses.replace(r, stored_bytes=n) for r, n in zip(results, stored, strict=True)]


def _stored(output: str | None, subfiled: bool) -> int:
    """Bytes ``output`` takes (a subfiled output's parts included; 0: none, or gone)."""
    if output is None:
        return 0
    paths = [Path(output)]
    parts = parts_folder(Path(output))
    if subfiled and parts.is_dir():
        paths += [p for p in parts.iterdir() if p.is_file()]
    return sum(p.stat().st_size for p in paths if p.is_file())


def _as_job(job: Job | Mapping[str, Any] | str | os.PathLike[str], overrides: Sequence[str]) -> Job:
    if isinstance(job, Job):
        return job
    if isinstance(job, Mapping):
        return job_from_dict(job)
    return load_job(Path(job), overrides)


def _identity(job: Job, file: JobFile) -> str:
    """Size, modification and change times and inode of an input, as recorded in its output.

    The change time and the inode tell a replacement with preserved times (``cp -p``,
    ``rsync -t``) from the file the output was made of (:func:`h5par.engine.journal.file_identity`).
    A series records the digest of every file's (:func:`h5par.engine.series.identity`).
    """
    if job.series is not None:
        return series_identity(job.series)
    return ":".join(str(v) for v in file_identity(file.input.stat()).values())


def _check_not_busy(job: Job, file: JobFile) -> None:
    """Refuse at once a file whose work folder another run holds (reads the lock).

    The run takes the lock itself later (:func:`h5par.engine.lock.take`); this says so before
    anything opens the file, which the running job may hold.
    """
    destination = job.destination(file)
    if destination is not None:
        check_free(work_folder_of(destination, job.in_place))


def stopped_file(job: Job, file: JobFile) -> bool:
    """True when a run of ``file`` left its work folder (stopped, killed or failed; rank 0).

    ``--resume`` of a job of several files resumes those and starts the others afresh.
    """
    destination = job.destination(file)
    try:  # a name too long, a folder we may not search: the output checks name it
        return destination is not None and work_folder_of(destination, job.in_place).is_dir()
    except OSError:
        return False


def finished_file(job: Job, file: JobFile) -> bool:
    """True when an earlier run of this very job completed ``file`` (rank 0; reads attributes).

    The output (or, in place, the input) records the job's digest and, for a new output,
    the input's identity and the digest of the job's own functions' modules: a rerun
    after a stop skips what is done unless the job says ``overwrite``; an output made by
    since-edited functions is not done (the rerun asks for ``overwrite``).
    """
    return _finished(job, file, _code_digest(job))


def _clear_finished(job: Job, finished: list[bool]) -> None:
    """Remove what runs killed while finalizing left beside finished files (rank 0)."""
    for file, done in zip(job.files, finished, strict=True):
        target = job.destination(file)
        if done and target is not None:
            clear_finished(target, job.in_place, job.sha256)


def finished_files(job: Job) -> list[bool]:
    """:func:`finished_file` of every file of ``job`` (its functions' code digested once)."""
    code = _code_digest(job)
    return [_finished(job, file, code) for file in job.files]


def _finished(job: Job, file: JobFile, code: str | None) -> bool:
    target = job.destination(file)
    if job.overwrite or target is None:
        return False
    try:
        if not target.is_file():  # OSError: a name too long, a folder we may not search
            return False
        with h5py.File(target, "r") as f:
            if f.attrs.get("h5par_job_sha256") != job.sha256:
                return False
            if job.in_place:  # applied once: done, whatever its code says now
                return True
            same_code = f.attrs.get("h5par_code_sha256") == code
            return same_code and f.attrs.get("h5par_input") == _identity(job, file)
    except (OSError, KeyError, TypeError, ValueError):
        return False


def _skipped(job: Job, i: int) -> FileResult:
    file = job.files[i]
    output = job.destination(file)
    result = Result(str(output), [], {}, [], [], 0.0)  # no rank did anything
    name = str(file.input) if job.series is None else label(job.series)
    return FileResult(i, name, [], result, skipped=True)


def _new_folders(folder: Path) -> list[str]:
    """The output folders a run would create for one file (``h5par plan`` lists them)."""
    return [str(p) for p in new_folders(folder)]


def _sizes(job: Job) -> list[int]:
    """The bytes of each input of ``job`` (a series': those of all its files)."""
    if job.series is not None:
        return [sum(_size(p) for p in job.series.sources)]
    return [_size(f.input) for f in job.files]


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def plan_job(
    job: Job, nranks: int, how_to_overwrite: str = "pass overwrite=True to run"
) -> list[dict[str, Any]]:
    """What ``run`` would do on ``nranks`` ranks, without reading data (one process).

    One entry per input file: its output, the output folders that would be created
    (``new_folders``), whether an earlier run of the job completed it (``skipped``: a
    rerun leaves it), whether all ranks share it or one rank owns it (``ranks``), and per
    dataset each rank's region, steps under the memory budget and bytes, numbered by the
    job's ranks. ``how_to_overwrite`` as for :func:`run`.

    Raises
    ------
    JobProblemsError
        Every problem found in every file and dataset, one line each (an existing output
        does not hide a bad dataset name).
    """
    if job.series is not None:
        return _plan_series(job, job.series, nranks, how_to_overwrite)
    return _plan_files(job, nranks, how_to_overwrite)


def _plan_series(
    job: Job, series: Series, nranks: int, how_to_overwrite: str
) -> list[dict[str, Any]]:
    """:func:`plan_job` of a series, on its joined file (made for the plan if not there)."""
    (file,) = job.files
    assert file.output is not None
    with planned(series, file.output) as joined:
        planning = dataclasses.replace(job, files=[dataclasses.replace(file, input=joined)])
        (entry,) = _plan_files(planning, nranks, how_to_overwrite)
    entry["input"] = label(series)
    entry["series"] = {"combine": series.combine, "files": [str(p) for p in series.sources]}
    return [entry]


def _plan_files(job: Job, nranks: int, how_to_overwrite: str) -> list[dict[str, Any]]:
    """:func:`plan_job` of a job's files, each its own input."""
    sizes = _sizes(job)
    finished = finished_files(job)
    todo = [i for i, done in enumerate(finished) if not done]
    shared, own = _split(todo, sizes, nranks, job.file_parallel_below)
    owner = {i: r for r, files in enumerate(own) for i in files}
    problems: list[str] = []
    entries = []
    for file in job.files:
        ranks = list(range(nranks)) if file.index in shared else [owner.get(file.index, 0)]
        entry = _plan_entry(job, file, sizes[file.index], ranks)
        if finished[file.index]:
            entries.append({**entry, "skipped": True, "ranks": []})
            continue
        work = _checked_work(job, file, how_to_overwrite, len(ranks), problems)
        if work is not None:
            entry["datasets"] = _planned(job, work, ranks, problems)
        entries.append(entry)
    if problems:
        raise JobProblemsError(problems)
    return entries


def _plan_entry(job: Job, file: JobFile, nbytes: int, ranks: list[int]) -> dict[str, Any]:
    """A file's plan entry before its datasets are inspected."""
    return {
        "input": str(file.input),
        "output": None if file.output is None else str(file.output),
        "new_folders": [] if file.output is None else _new_folders(file.output.parent),
        "bytes": nbytes,
        "skipped": False,
        "ranks": ranks,
        "parallelism": "dataset-level (all ranks)"
        if len(ranks) > 1
        else f"file-level (rank {ranks[0]})",
        "datasets": {},
    }


def _checked_work(
    job: Job, file: JobFile, how_to_overwrite: str, nranks: int, problems: list[str]
) -> Work | None:
    """``file``'s work, or None with its problems noted (an existing output, then the rest).

    An output that exists is noted, and the file is checked on as if it were to be
    replaced, so that what else is wrong shows too.
    """
    try:
        return work_for(job, file, how_to_overwrite, nranks=nranks)
    except UsageError as exc:
        problems.append(str(exc))
    if job.overwrite:
        return None
    try:
        work = work_for(
            dataclasses.replace(job, overwrite=True), file, how_to_overwrite, nranks=nranks
        )
    except UsageError as exc:
        if str(exc) not in problems:
            problems.append(str(exc))
        return None
    return work


def _planned(job: Job, work: Work, ranks: list[int], problems: list[str]) -> dict[str, Any]:
    """Per dataset of ``work``: shapes, dtypes and every rank's share (problems noted)."""
    try:
        plan = inspect_input(work, problems)
    except UsageError as exc:  # the file itself: cannot be opened, not HDF5...
        problems.append(str(exc))
        return {}
    n = len(ranks)
    planned = {}
    for t in [*plan.targets, *plan.derived]:
        chain = work.chain_for(t)
        planned[t.path] = {
            "shape": list(t.shape),
            "dtype": str(t.dtype),
            "out_shape": list(t.out_shape),
            "out_dtype": str(t.out_dtype),
            "ranks": [{**share(t, chain, r, n, job.memory), "rank": ranks[r]} for r in range(n)],
            "note": unit_note(t, chain, job.memory),
        }
        if t.derived:
            planned[t.path]["formula"] = t.formula
    if work.series is not None:
        _feeding(work, plan.targets, planned)
    return planned


def _feeding(work: Work, targets: Sequence[Target], planned: dict[str, Any]) -> None:
    """Add to each share of a series' joined datasets the files it reads (``files``)."""
    assert work.series is not None
    given = {os.path.realpath(p): str(p) for p in work.series.sources}  # as the job names them
    with h5py.File(work.input, "r") as f:
        for t in targets:
            for entry in planned[t.path]["ranks"]:
                names = feeding_files(f[t.path], input_region(t, entry["region"]))
                entry["files"] = [given[os.path.realpath(work.input.parent / n)] for n in names]
