"""SLURM batch scripts: ``h5par submit`` and the templates in ``slurm/``.

One function, :func:`batch_script`, writes every script from one template,
``templates/job.sbatch`` in this package (the bash, with ``{placeholders}`` that
:func:`batch_script` fills): the scripts ``h5par submit`` submits and the copy-and-edit
templates ``slurm/one_node.sbatch`` and ``slurm/multi_node.sbatch`` (:data:`TEMPLATES`; a
test checks the files equal its output, ``python -m h5par.app.slurm`` rewrites them).

A script runs ``python -m mpi4py -m h5par run JOB`` under ``mpirun`` or ``srun``, asks
SLURM for ``USR1`` a while before the time limit (``--signal=B:USR1@SECONDS``), forwards it
to the launcher so that h5par stops at a block boundary with exit status 75, and then
requeues the job, which resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import shlex
import shutil
import subprocess
import sys
import unicodedata
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from h5par.errors import H5ParError, UsageError

__all__ = [
    "DEFAULT_STOP_BEFORE",
    "LAUNCHERS",
    "REPOSITORY_SLURM",
    "TEMPLATES",
    "BatchOptions",
    "batch_script",
    "jobid_file",
    "parse_time",
    "script_file",
    "slurm_state",
    "submit",
    "submit_options",
    "write_templates",
]

LAUNCHERS = ("mpirun", "srun")
DEFAULT_STOP_BEFORE = 120  # seconds between the USR1 warning and the time limit
_MAX_STOP_BEFORE = 65535  # SLURM's limit for --signal=...@SECONDS
_TIMEOUT = 30.0  # seconds for one SLURM client command
_NAME = re.compile(r"[A-Za-z0-9_.+@:-]+(,[A-Za-z0-9_.+@:-]+)*")
_SAFE_PATH = re.compile(r"[A-Za-z0-9_./+@%:,=~-]+")
_TIME = re.compile(r"(?:(\d+)-)?(\d+):(\d\d):(\d\d)", re.ASCII)
_SHELL_SAFE = re.compile(r"[\w@%+=:,./-]+", re.ASCII)  # what shlex.quote leaves bare
# Control characters (newline, CR, NUL, escapes...), format controls (bidi overrides),
# undecodable bytes (surrogates) and line/paragraph separators: refused in every value.
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# sbatch reads `#SBATCH --key="value"` with its own quoting (src/sbatch/opt.c, _get_argument):
# a double quote or a backslash cannot be carried, # is escaped (\#), and % starts a filename
# pattern (--output).
_NOT_IN_DIRECTIVES = '"\\%'


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    """What a batch script runs and asks SLURM for.

    Attributes
    ----------
    job : str
        The job file, as the script names it (absolute for ``h5par submit``).
    nodes : int
        ``--nodes``.
    ntasks : int or None
        ``--ntasks`` (MPI ranks); None leaves SLURM's default (one per node).
    time : str or None
        ``--time`` as ``[D-]HH:MM:SS``; None leaves the partition's default.
    partition, account : str or None
        ``--partition`` and ``--account``; None writes them commented out.
    launcher : str
        ``mpirun`` or ``srun`` (see :data:`LAUNCHERS`).
    stop_before : int
        Seconds before the time limit at which SLURM sends USR1 (h5par stops, the job
        requeues).
    python : str
        The interpreter that runs h5par (``h5par submit``: its own, absolute).
    output : str
        ``--output``: the log of stdout and stderr (``%j`` is the job id).
    name : str
        ``--job-name``.
    chdir : str or None
        ``--chdir``: the folder the job runs in (None: where sbatch was called).
    run_args : tuple of str
        Extra ``h5par run`` arguments (``--set KEY=VALUE`` ...).
    template : bool
        A copy-and-edit template: environment activation examples and ``CHANGE`` marks.
    """

    job: str
    nodes: int = 1
    ntasks: int | None = None
    time: str | None = None
    partition: str | None = None
    account: str | None = None
    launcher: str = "mpirun"
    stop_before: int = DEFAULT_STOP_BEFORE
    python: str = "python"
    output: str = "h5par-%j.out"
    name: str = "h5par"
    chdir: str | None = None
    run_args: tuple[str, ...] = ()
    template: bool = False


TEMPLATES = {
    "one_node.sbatch": BatchOptions(
        job="$HOME/jobs/postprocess.toml", ntasks=16, time="02:00:00", template=True
    ),
    "multi_node.sbatch": BatchOptions(
        job="$HOME/jobs/postprocess.toml", nodes=4, ntasks=128, time="12:00:00", template=True
    ),
}
"""The templates in ``slurm/``: file name -> options."""

#: The repository's ``slurm/`` folder, which ``python -m h5par.app.slurm`` rewrites.
REPOSITORY_SLURM = Path(__file__).resolve().parents[2] / "slurm"


def parse_time(text: str) -> int:
    """Seconds in a SLURM time limit given as ``HH:MM:SS`` or ``D-HH:MM:SS``.

    Examples
    --------
    >>> parse_time("00:01:00"), parse_time("1-02:00:00")
    (60, 93600)
    >>> parse_time("90")
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: --time '90': expected HH:MM:SS or D-HH:MM:SS, e.g. 02:00:00
    """
    match = _TIME.fullmatch(text.strip())
    hint = "expected HH:MM:SS or D-HH:MM:SS, e.g. 02:00:00"
    if match is None:
        raise UsageError(f"--time {text!r}: {hint}")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    if minutes > 59 or seconds > 59 or (match.group(1) and hours > 23):
        raise UsageError(f"--time {text!r}: {hint} (minutes and seconds below 60)")
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total == 0:
        raise UsageError(f"--time {text!r}: the time limit must be longer than 0")
    return total


def _count(flag: str, text: str | int | None, default: int | None) -> int | None:
    if text is None:
        return default
    value = str(text).strip()
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise UsageError(f"{flag} {text!r}: expected a whole number of at least 1")
    return int(value)


def _printable(what: str, text: str) -> str:
    r"""``text``, or a UsageError if it holds a control character (newline, CR, NUL...).

    Examples
    --------
    >>> _printable("--set", "run.memory=1GiB")
    'run.memory=1GiB'
    >>> _printable("job file", "/data/job\ntouch PWNED #.toml")
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: job file '/data/job\ntouch PWNED #.toml' contains the control character '\n' (valid: printable characters; a batch script cannot carry it safely)
    """
    bad = next((c for c in text if unicodedata.category(c) in _UNSAFE), None)
    if bad is not None:
        raise UsageError(
            f"{what} {text!r} contains the control character {bad!r} (valid: printable "
            "characters; a batch script cannot carry it safely)"
        )
    return text


def _name(flag: str, text: str | None) -> str | None:
    if text is None or _NAME.fullmatch(text):
        return text
    raise UsageError(
        f"{flag} {text!r}: expected a SLURM name (letters, digits, _ . + @ : -; "
        "a comma-separated list for several)"
    )


def _counts(
    nodes: str | int | None, ntasks: str | int | None, stop_before: str | int | None
) -> tuple[int, int | None, int]:
    """``--nodes``, ``--ntasks`` and ``--stop-before`` as whole numbers, checked together."""
    nnodes = _count("--nodes", nodes, 1)
    ntask = _count("--ntasks", ntasks, None)
    lead = _count("--stop-before", stop_before, DEFAULT_STOP_BEFORE)
    assert nnodes is not None and lead is not None  # defaults are set
    if ntask is not None and ntask < nnodes:
        raise UsageError(
            f"--ntasks {ntask} is fewer than --nodes {nnodes}: give one task per node at least"
        )
    if lead > _MAX_STOP_BEFORE:
        raise UsageError(f"--stop-before {lead}: SLURM allows at most {_MAX_STOP_BEFORE} seconds")
    return nnodes, ntask, lead


def _time_limit(time: str | None, lead: int) -> str | None:
    """``--time``, checked to leave ``lead`` seconds of warning before it."""
    if time is not None and parse_time(time) <= lead:
        raise UsageError(
            f"--stop-before {lead} s is not shorter than --time {time}: "
            f"give --stop-before SECONDS below {parse_time(time)}"
        )
    return time.strip() if time else None


def _launcher(launcher: str) -> str:
    if launcher not in LAUNCHERS:
        raise UsageError(f"--launcher {launcher!r}: expected one of {', '.join(LAUNCHERS)}")
    return launcher


def _job_path(job: str | Path) -> Path:
    """The job file, absolute, checked to be nameable in the script and its ``#SBATCH`` lines."""
    path = Path(_printable("job file", str(job))).resolve()
    _printable("job file", str(path))  # the folder too
    if any(c in str(path) for c in _NOT_IN_DIRECTIVES):
        raise UsageError(
            f"job file {str(path)!r}: #SBATCH lines (--chdir, --output) cannot name a path "
            "with a double quote, a backslash or % in it; rename or move the job"
        )
    return path


def submit_options(
    job: str | Path,
    *,
    nodes: str | int | None = None,
    ntasks: str | int | None = None,
    time: str | None = None,
    partition: str | None = None,
    account: str | None = None,
    launcher: str = "mpirun",
    stop_before: str | int | None = None,
    run_args: Sequence[str] = (),
    python: str = sys.executable,
) -> BatchOptions:
    """Validate ``h5par submit``'s arguments into the options of the job's batch script.

    Raises
    ------
    UsageError
        A bad value, named with what is valid (exit status 2).

    Examples
    --------
    >>> submit_options("/data/clip.toml", ntasks="4", time="00:30:00").output
    '/data/clip-%j.out'
    >>> submit_options("/data/clip.toml", ntasks="0")
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: --ntasks '0': expected a whole number of at least 1
    >>> submit_options("clip.toml", time="00:01:00")
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: --stop-before 120 s is not shorter than --time 00:01:00: give --stop-before SECONDS below 60
    """
    nnodes, ntask, lead = _counts(nodes, ntasks, stop_before)
    limit = _time_limit(time, lead)
    launcher = _launcher(launcher)
    path = _job_path(job)
    return BatchOptions(
        job=str(path),
        nodes=nnodes,
        ntasks=ntask,
        time=limit,
        partition=_name("--partition", partition),
        account=_name("--account", account),
        launcher=launcher,
        stop_before=lead,
        python=_printable("python", python),
        output=str(path.parent / f"{path.stem}-%j.out"),
        name="h5par-" + re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem),
        chdir=str(path.parent),
        run_args=tuple(_printable("run argument", a) for a in run_args),
    )


def _directive(key: str, value: str | int | None, placeholder: str = "") -> list[str]:
    if value is None:
        return [f"##SBATCH --{key}={placeholder}"] if placeholder else []
    text = _printable(f"#SBATCH --{key}", str(value))
    forbidden = _NOT_IN_DIRECTIVES.replace("%", "") if key == "output" else _NOT_IN_DIRECTIVES
    bad = next((c for c in text if c in forbidden), None)
    if bad is not None:  # %j in --output is SLURM's job id, on purpose
        raise UsageError(f"#SBATCH --{key} {text!r}: sbatch cannot read a value with {bad!r} in it")
    if not _SAFE_PATH.fullmatch(text):  # sbatch reads a quoted value with spaces as one;
        text = '"' + text.replace("#", "\\#") + '"'  # older sbatch ends it at a bare #
    return [f"#SBATCH --{key}={text}"]


def _shell(value: str) -> str:
    """A shell word; ``$HOME/...`` stays expandable in templates."""
    rest = value.removeprefix("$HOME/")
    if rest == value:
        return shlex.quote(value)
    return f'"$HOME/{rest}"' if _SHELL_SAFE.fullmatch(rest) else '"$HOME"/' + shlex.quote(rest)


def _check_options(o: BatchOptions) -> None:
    """Refuse options no batch script can carry: control characters, unknown launchers."""
    for field in ("job", "time", "partition", "account", "python", "output", "name", "chdir"):
        value = getattr(o, field)
        if value is not None:
            _printable(field, str(value))
    for arg in o.run_args:
        _printable("run argument", arg)
    for field in ("nodes", "ntasks", "stop_before"):
        value = getattr(o, field)
        if value is not None and (type(value) is not int or value < 1):
            raise UsageError(f"{field} = {value!r} (valid: a whole number of at least 1)")
    if o.launcher not in LAUNCHERS:
        raise UsageError(f"launcher {o.launcher!r} (valid: {', '.join(LAUNCHERS)})")


#: In this package: the script, with str.format {placeholders} (bash braces doubled: ${{X}}).
_TEMPLATE = "templates/job.sbatch"
_HEADER_TEMPLATE = """\
# h5par on SLURM, {where}. Copy this file, change the lines
# marked CHANGE (ranks, time limit, job file), pick the environment, then sbatch it.
# `h5par submit JOB` writes and submits the same script for one job.
# (Generated from h5par/app/templates/job.sbatch by h5par/app/slurm.py: in h5par's
# repository, change those and run `python -m h5par.app.slurm`, not this file.)"""
_HEADER_SUBMIT = """\
# Written by `h5par submit` for {job}
# (rewritten at every submit; to customise, copy h5par's slurm/one_node.sbatch)."""
_ENVIRONMENT_TEMPLATE = """\
# Environment: the one h5py was built in, with the MPI it was built against.
# Pick one (h5par info checks the result: 'h5py built with MPI  yes'):
# module load openmpi hdf5/parallel             # site modules
# source "$HOME/miniforge3/bin/activate" h5par   # conda env from environment.yml
# source "$HOME/h5par/.venv/bin/activate"        # a virtual environment"""
_ENVIRONMENT_SUBMIT = """\
# Environment: the python that ran `h5par submit` (nothing to activate). sbatch
# passes the submitting shell's environment (PATH, mpirun) to the job."""


@functools.cache
def _template() -> str:
    """The script template shipped in the package (``templates/job.sbatch``)."""
    return (resources.files("h5par.app") / _TEMPLATE).read_text(encoding="utf-8")


def _resources(o: BatchOptions) -> list[str]:
    """The ``#SBATCH`` lines asking for the allocation (``--output`` and the signal apart)."""
    multi = o.nodes > 1
    lines = _directive("job-name", o.name)
    if o.template:
        what = "nodes, ranks (MPI tasks)" if multi else "ranks (MPI tasks)"
        lines.append(f"# CHANGE: {what} and the time limit (HH:MM:SS).")
    lines += _directive("nodes", o.nodes)
    if multi:
        lines.append("# (or --ntasks-per-node=N: N ranks on each node)")
    lines += _directive("ntasks", o.ntasks)
    lines += _directive("time", o.time)
    lines += _directive("partition", o.partition, "PARTITION")
    lines += _directive("account", o.account, "ACCOUNT")
    if o.chdir is not None:
        lines += _directive("chdir", o.chdir)
    return lines


def batch_script(options: BatchOptions) -> str:
    """The text of a SLURM batch script running ``h5par run`` with ``options``.

    The script is ``templates/job.sbatch`` in this package; this function checks the
    options (:func:`_check_options`), chooses the parts that differ between a
    copy-and-edit template and ``h5par submit``'s script, and quotes every value.

    Examples
    --------
    >>> text = batch_script(BatchOptions(job="/data/clip.toml", ntasks=4, launcher="srun"))
    >>> "#SBATCH --signal=B:USR1@120" in text and "LAUNCHER=srun" in text
    True
    """
    o = options
    _check_options(o)
    if o.template:
        header = _HEADER_TEMPLATE.format(where="several nodes" if o.nodes > 1 else "one node")
    else:
        header = _HEADER_SUBMIT.format(job=o.job)
    return _template().format(
        header=header,
        resources="\n".join(_resources(o)),
        output="\n".join(_directive("output", o.output)),
        stop_before=o.stop_before,
        environment=_ENVIRONMENT_TEMPLATE if o.template else _ENVIRONMENT_SUBMIT,
        python=_shell(o.python),
        job=_shell(o.job),
        change="  # CHANGE: the job file" if o.template else "",
        launcher=o.launcher,
        run_args=" ".join(shlex.quote(a) for a in o.run_args),
    )


def write_templates(folder: str | Path) -> list[Path]:
    """Write :data:`TEMPLATES` into ``folder`` (the repository's ``slurm/``)."""
    written = []
    for name, options in TEMPLATES.items():
        path = Path(folder) / name
        path.write_text(batch_script(options))
        written.append(path)
    return written


def script_file(job: str | Path) -> Path:
    """Where ``h5par submit`` writes a job's batch script: ``JOBNAME.sbatch`` next to it."""
    path = Path(job).resolve()
    return path.with_name(f"{path.stem}.sbatch")


def jobid_file(job: str | Path) -> Path:
    """Where ``h5par submit`` records the SLURM job id: ``.JOBNAME.slurm-jobid``."""
    path = Path(job).resolve()
    return path.with_name(f".{path.stem}.slurm-jobid")


def _client(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise UsageError(
            f"{name} not found: SLURM is not installed here (h5par submit --dry-run prints "
            "the batch script without submitting it)"
        )
    return found


def submit(options: BatchOptions, job: str | Path) -> str:
    """Write the job's batch script next to it, submit it with sbatch, record the job id.

    Returns
    -------
    str
        What ``h5par submit`` prints: the job id, the script and the log.

    Raises
    ------
    UsageError
        sbatch is not installed (exit status 2).
    H5ParError
        sbatch refused the job or did not answer (exit status 1).
    """
    sbatch = _client("sbatch")
    script = script_file(job)
    script.write_text(batch_script(options))
    try:
        done = subprocess.run(
            [sbatch, "--parsable", str(script)],
            cwd=script.parent,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:  # our own timeout: the cause adds nothing
        raise H5ParError(f"sbatch {script} did not answer within {_TIMEOUT:.0f} s") from None
    jobid = done.stdout.strip().split(";")[0]
    if done.returncode != 0 or not jobid.isdigit():
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise H5ParError(f"sbatch {script} failed: {why}")
    jobid_file(job).write_text(jobid + "\n")
    log = options.output.replace("%j", jobid)
    return f"submitted SLURM job {jobid}\nscript: {script}\nlog: {log}"


def _fields(text: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S*)", text))


def slurm_state(job: str | Path) -> str | None:
    """The SLURM state of the job last submitted for ``job``, or None if none was.

    Asks ``scontrol show job`` (jobs SLURM still holds), then ``sacct`` (finished jobs,
    where accounting is on).
    """
    record = jobid_file(job)
    if not record.is_file():
        return None
    jobid = record.read_text().strip()
    head = f"SLURM job {jobid}"
    log = f"log {Path(job).resolve().with_name(f'{Path(job).stem}-{jobid}.out')}"
    scontrol, sacct = shutil.which("scontrol"), shutil.which("sacct")
    if scontrol is None:
        return f"{head}: state unknown (scontrol not found: SLURM is not installed here)"
    why = ""
    try:
        shown = subprocess.run(
            [scontrol, "show", "job", "-o", jobid],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
        fields = _fields(shown.stdout)
        if shown.returncode == 0 and "JobState" in fields:
            return f"{head}: {_describe(fields)}; {log}"
        why = (shown.stderr.strip().splitlines() or [""])[-1]
        if sacct is not None:
            listed = subprocess.run(
                [sacct, "-n", "-X", "-P", "-j", jobid, "-o", "State,ExitCode,Elapsed"],
                capture_output=True,
                text=True,
                timeout=_TIMEOUT,
                check=False,
            )
            rows = listed.stdout.strip().splitlines()
            if listed.returncode == 0 and rows:
                state, code, elapsed = [*rows[-1].split("|"), "", ""][:3]
                return f"{head}: {state}, exit code {code}, ran {elapsed}; {log}"
    except subprocess.TimeoutExpired:
        why = f"no answer within {_TIMEOUT:.0f} s"
    return f"{head}: no longer known to SLURM ({why or 'no accounting'}); {log}"


def _describe(fields: dict[str, str]) -> str:
    state = fields["JobState"]
    text = state
    if state == "PENDING" and fields.get("Reason", "None") != "None":
        text += f" ({fields['Reason']})"
    if state == "RUNNING":
        text += f" for {fields.get('RunTime', '?')} of {fields.get('TimeLimit', '?')}"
    if state not in ("PENDING", "RUNNING"):
        text += f", exit code {fields.get('ExitCode', '?')}"
    restarts = fields.get("Restarts", "0")
    if restarts not in ("", "0"):
        text += f", requeued {restarts} time(s)"
    return text


if __name__ == "__main__":  # pragma: no cover
    for written in write_templates(REPOSITORY_SLURM):
        print(written)
