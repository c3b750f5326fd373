"""Ranks on several hosts: every host must see the job and its files as rank 0 does.

The nodes of a cluster share a parallel file system, not their own disks (``/tmp``). An
output folder on one node's disk would have the ranks of another node write into a file of
their own (a run that hangs, or outputs scattered over the nodes); an input that is another
file on another node (a copy that differs, a missing one) hangs a collective read or mixes
two inputs into one output; so does a job file that differs. Checked once per job before
anything is written, and only when the ranks run on several hosts: the first rank of each
host compares every input's size and modification time with rank 0's (and the inputs its
own globs found), the job's digest with rank 0's, and looks for the probe file rank 0 makes
in each output folder (in its nearest existing folder, when it is still to be made).
Costs one ``stat`` per input per host, one probe file per distinct existing folder.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from h5par.errors import UsageError
from h5par.parallel.agreement import collective_errors
from h5par.parallel.comm import bcast, hosts, rank

if TYPE_CHECKING:
    from h5par.parallel.comm import Comm

__all__ = ["PROBE", "check_shared"]

#: The name prefix of rank 0's probe files (removed at once; left only by a killed run).
PROBE = ".h5par-shared-"
#: A probe older than this (seconds) was left by a killed run: the next probe removes it.
_STALE = 600.0
_VALID = "valid: files on a file system every host sees; /tmp is each node's own"

Identity = tuple[int, int] | None
#: A probe: the folders it stands for ({folder: "output" or "input"}) and its file.
Probe = tuple[dict[str, str], str]


def check_shared(
    inputs: Iterable[Path],
    outputs: Mapping[Path, str],
    comm: Comm,
    names: list[str] | None = None,
    digest: Callable[[], str] | None = None,
) -> None:
    """Refuse (exit 2) a job some host does not see as rank 0 does. Collective.

    Parameters
    ----------
    inputs : iterable of Path
        The files every rank may read (this rank's list: its globs may find other files).
    outputs : mapping of Path to str
        The folders outputs and work folders go to (made later when missing), each with
        what it holds for the messages: ``"output"``, or ``"input"`` in place.
    comm : Comm
        The job's communicator; nothing is checked when its ranks share one host.
    names : list of str, optional
        Each rank's host name, when known (:func:`~h5par.parallel.comm.hosts`).
    digest : callable, optional
        The job's digest as this rank read it (called only on several hosts).
    """
    names = names or hosts(comm)
    if len(set(names)) == 1:
        return
    me, mine = rank(comm), [str(path) for path in inputs]
    ours = None if digest is None else digest()
    seen: list[tuple[str, Identity]] = []
    probes: list[Probe] = []
    try:
        with collective_errors(comm, "check shared files"):
            if me == 0:
                seen = [(path, _identity(path)) for path in mine]
                _make_probes(outputs, probes)
        seen, probes, theirs = bcast(comm, (seen, probes, ours))
        with collective_errors(comm, "check shared files"):
            if me != 0 and names.index(names[me]) == me:  # the first rank of its host
                _compare_inputs(mine, seen, names[0])
                if ours != theirs:
                    raise UsageError(
                        f"the job differs on this host from {names[0]}'s: its job file or "
                        f"a kernel's module is another file here ({_VALID})"
                    )
                _compare_outputs(probes, names[0])
    finally:
        for _, made in probes if me == 0 else ():
            with contextlib.suppress(OSError):
                os.unlink(made)


def _identity(path: str) -> Identity:
    """Size and modification time (ns) of ``path``; None when it cannot be seen."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _make_probes(outputs: Mapping[Path, str], probes: list[Probe]) -> None:
    """One probe file per existing folder the ``outputs`` are in or below, into ``probes``.

    Appended as made, so that the caller removes every one made if a later one fails.
    """
    folders: dict[Path, dict[str, str]] = {}
    for folder, what in outputs.items():
        existing = _existing(folder)
        if existing is not None:
            folders.setdefault(existing, {})[str(folder)] = what
    for existing, stands_for in sorted(folders.items()):
        _remove_stale(existing)
        try:
            fd, made = tempfile.mkstemp(prefix=PROBE, dir=existing)
        except OSError:
            continue  # not writable: the output's own checks say so
        os.close(fd)
        probes.append((stands_for, made))


def _existing(folder: Path) -> Path | None:
    """``folder`` or its nearest existing parent; None when that cannot be found out."""
    try:
        while not folder.is_dir() and folder != folder.parent:
            folder = folder.parent
    except OSError:
        return None  # a name too long, a folder not searchable: the output's checks say so
    return folder


def _remove_stale(folder: Path) -> None:
    """Remove probes a killed run left in ``folder`` (older than ``_STALE`` seconds)."""
    before = time.time() - _STALE
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            ours = entry.name.startswith(PROBE) and entry.is_file(follow_symlinks=False)
            if ours and entry.stat().st_mtime < before:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _compare_inputs(inputs: list[str], seen: list[tuple[str, Identity]], host0: str) -> None:
    """Raise for the first input this host sees otherwise than ``host0`` (``seen``)."""
    theirs = dict(seen)
    extra = next((path for path in inputs if path not in theirs), None)
    if extra is not None:
        _refuse_input(extra, f"here, not on {host0}")
    for path, identity in seen:
        mine = _identity(path)
        if identity is None or mine == identity:
            continue
        if mine is None:
            _refuse_input(path, f"missing here, not on {host0}")
        elif mine[0] != identity[0]:
            _refuse_input(path, f"{mine[0]} bytes here, {identity[0]} on {host0}")
        _refuse_input(path, f"another file here than on {host0} (modification times differ)")


def _refuse_input(path: str, what: str) -> NoReturn:
    raise UsageError(f"input {path!r} is not shared by every host: {what} ({_VALID})")


def _compare_outputs(probes: list[Probe], host0: str) -> None:
    """Raise for the first output folder where this host misses ``host0``'s probe file."""
    for stands_for, made in probes:
        if not os.path.exists(made):
            folder, what = next(iter(stands_for.items()))
            raise UsageError(
                f"{what} folder {folder!r} is not shared by every host: a file {host0} "
                f"made in {str(Path(made).parent)!r} is missing here ({_VALID})"
            )
