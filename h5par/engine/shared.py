"""Ranks on several hosts: every host must see the job's files as rank 0 does.

The nodes of a cluster share a parallel file system, not their own disks (``/tmp``). An
output folder on one node's disk would have the ranks of another node write into a file of
their own (a run that hangs, or outputs scattered over the nodes); an input that is another
file on another node (a copy that differs, a missing one) hangs a collective read. Checked
once per job before anything is written, and only when the ranks run on several hosts: the
first rank of each host compares every input's size and modification time with rank 0's,
and looks for the probe file rank 0 makes in each output folder (in its nearest existing
folder, when it is still to be created). Costs one ``stat`` per input per host.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from h5par.errors import UsageError
from h5par.parallel.agreement import collective_errors
from h5par.parallel.comm import bcast, hosts, rank

if TYPE_CHECKING:
    from h5par.parallel.comm import Comm

__all__ = ["check_shared"]

_VALID = "valid: files on a file system every host sees; /tmp is each node's own"


def check_shared(
    inputs: Iterable[Path], outputs: Iterable[Path], comm: Comm, names: list[str] | None = None
) -> None:
    """Refuse (exit 2) files some host does not see as rank 0 does. Collective.

    Parameters
    ----------
    inputs : iterable of Path
        The files every rank may read.
    outputs : iterable of Path
        The folders outputs and work folders go to (made later when missing).
    comm : Comm
        The job's communicator; nothing is checked when its ranks share one host.
    names : list of str, optional
        Each rank's host name, when known (:func:`~h5par.parallel.comm.hosts`).
    """
    names = names or hosts(comm)
    if len(set(names)) == 1:
        return
    me = rank(comm)
    mine = [str(path) for path in inputs]  # this rank's: a glob may match other files
    seen: list[tuple[str, tuple[int, int] | None]] = []
    probes: list[tuple[str, str] | None] = []
    try:
        with collective_errors(comm, "check shared files"):
            if me == 0:
                seen = [(path, _identity(path)) for path in mine]
                probes = [_probe(Path(folder)) for folder in sorted({str(f) for f in outputs})]
        seen, probes = bcast(comm, (seen, probes))
        with collective_errors(comm, "check shared files"):
            if me != 0 and names.index(names[me]) == me:  # the first rank of its host
                _compare_inputs(mine, seen, names[0])
                _compare_outputs(probes, names[0])
    finally:
        for made in probes if me == 0 else ():
            if made is not None:
                with contextlib.suppress(OSError):
                    os.unlink(made[1])


def _identity(path: str) -> tuple[int, int] | None:
    """Size and modification time (ns) of ``path``; None when it cannot be seen."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _probe(folder: Path) -> tuple[str, str] | None:
    """A new empty file in ``folder`` or its nearest existing parent: (folder, file)."""
    existing = folder
    while not existing.is_dir() and existing != existing.parent:
        existing = existing.parent
    try:
        fd, name = tempfile.mkstemp(prefix=".h5par-shared-", dir=existing)
    except OSError:
        return None  # not writable: the output's own checks say so
    os.close(fd)
    return str(folder), name


def _compare_inputs(
    inputs: list[str], seen: list[tuple[str, tuple[int, int] | None]], host0: str
) -> None:
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


def _compare_outputs(probes: list[tuple[str, str] | None], host0: str) -> None:
    """Raise for the first output folder where this host misses ``host0``'s probe file."""
    for made in probes:
        if made is not None and not os.path.exists(made[1]):
            raise UsageError(
                f"output folder {made[0]!r} is not shared by every host: a file {host0} "
                f"made in {str(Path(made[1]).parent)!r} is missing here ({_VALID})"
            )
