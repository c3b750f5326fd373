"""``h5par status JOB``: where each file of a job stands, from its output and journal."""

from __future__ import annotations

import time
from pathlib import Path

from h5par.app.slurm import slurm_state
from h5par.engine.batch import finished_file
from h5par.engine.jobs import Job, JobFile
from h5par.engine.journal import DamagedJournalError, Journal, work_folder_of
from h5par.engine.lock import holder
from h5par.engine.series import label

__all__ = ["job_status"]


def job_status(job: Job, path: str | Path | None = None) -> list[str]:
    """One line per input file: done, running or stopped (units done), or not started.

    With the job file's ``path``, a last line gives the state of the SLURM job that
    ``h5par submit`` last submitted for it, if any.
    """
    lines = []
    for file in job.files:
        destination = job.destination(file)
        name = file.input if job.series is None else label(job.series)
        line = f"{name} -> {destination or '(statistics only)'}: {_state(job, file)}"
        lines.append(line.replace("\r", "\\r").replace("\n", "\\n"))  # names may hold them
    slurm = None if path is None else slurm_state(path)
    return lines if slurm is None else [*lines, slurm]


def _state(job: Job, file: JobFile) -> str:
    destination = job.destination(file)
    if destination is None:
        return "statistics only: nothing is kept between runs"
    if finished_file(job, file):
        return "done"
    folder = work_folder_of(destination, job.in_place)
    try:
        journal = Journal.load(folder)
    except DamagedJournalError as exc:
        return f"damaged: {exc}"
    owner = holder(folder)
    if journal is None and owner is not None:  # it holds the lock, building its output
        return f"running: starting ({folder}; {owner.describe(folder)})"
    if journal is None:
        return (
            "exists (not from this job)"
            if destination.is_file() and not job.in_place
            else "not started"
        )
    done, total = journal.count()
    try:
        age = time.time() - journal.updated()
    except OSError:  # it finished (or was removed) since it was read
        return _state(job, file)
    how = "stopped (rerun the job to resume)" if owner is None else "running"
    where = folder if owner is None else f"{folder}; {owner.describe(folder)}"
    share = 100 * done / total if total else 100.0
    return f"{how}: {done} of {total} units done ({share:.0f}%), journal updated {age:.0f} s ago ({where})"
