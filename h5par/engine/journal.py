"""Resumable progress: the work folder kept next to an output, and its journal.

A run that writes builds everything in a *work folder*, ``.NAME.h5par/`` next to its
destination: the temporary output (``output.h5``), ``journal.json`` listing the finished
*units* of every dataset (global blocks that do not depend on the rank count), the
combined statistics of finished units (``partials-*.npz``) and, for in-place runs, the new
data of a block staged before it overwrites the old one (``redo/``), the broadcast source
rows and the histogram ranges computed from the unmodified input.

A run that writes nothing (statistics only, and the read-only pre-passes of any run) keeps no
journal: :class:`NoJournal` stands for it, with the interface the data pass uses
(:class:`Journaling`).

Only rank 0 writes the journal (atomically: a temporary file renamed over it). Rank 0 also
holds the work folder's ``lock`` (:func:`take`) from before it resumes or starts a run until
the output is in place: one run per work folder, on any node. The journal's
:func:`fingerprint` holds explicit values only (:func:`canonical`). Nothing here talks MPI
or HDF5.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import fcntl
import hashlib
import json
import os
import shutil
import socket
import stat
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from h5par.errors import UsageError
from h5par.kernels import Partial

__all__ = [
    "NO_JOURNAL",
    "BusyError",
    "Journal",
    "Journaling",
    "Lock",
    "NoJournal",
    "Owner",
    "canonical",
    "check_free",
    "file_identity",
    "fingerprint",
    "holder",
    "stat_identity",
    "take",
    "work_folder",
    "work_folder_of",
]

VERSION = 1
OUTPUT = "output.h5"


def work_folder(destination: Path) -> Path:
    """The work folder of a run writing ``destination`` (in the same folder: same file system).

    >>> work_folder(Path("/data/clean.h5"))
    PosixPath('/data/.clean.h5.h5par')
    """
    return destination.parent / f".{destination.name}.h5par"


def work_folder_of(destination: Path, in_place: bool) -> Path:
    """The work folder of a run writing ``destination``, in place or into a new output.

    In place the file is written through a symbolic link: the work folder (and its lock)
    is the one of the file the link names, so that two runs reaching one file under two
    names never work in it at once. A new output replaces the name itself (a link too).
    """
    if in_place and destination.is_symlink():
        return work_folder(Path(os.path.realpath(destination)))
    return work_folder(destination)


def fingerprint(parts: Mapping[str, Any]) -> str:
    """A digest of what determines the result: the job, the input, the unit sizes.

    Only explicit values count (:func:`canonical`), never ``repr``: the same job gives the
    same digest on one process and on N ranks, before and after pickling.

    >>> fingerprint({"a": 1}) == fingerprint({"a": 1}) != fingerprint({"a": 2})
    True
    >>> import pickle
    >>> dt = np.dtype("f8")
    >>> fingerprint({"d": dt}) == fingerprint({"d": pickle.loads(pickle.dumps(dt))})
    True
    """
    text = json.dumps(canonical(parts), sort_keys=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def canonical(value: Any) -> Any:
    """``value`` as plain JSON data: the same for equal values, however they print.

    Dataclasses become their class name and ``init`` fields, dtypes their byte string
    (``<f8``) with fields, subarrays and h5py's metadata, arrays and numpy scalars their
    dtype and values, tuples and sets lists. Anything else is a TypeError: no ``repr`` fallback.

    >>> canonical((np.float32(1.5), np.dtype(">i2"), slice(1, None), bytes([1])))
    [{'array': {'dtype': '<f4'}, 'data': 1.5}, {'dtype': '>i2'}, {'slice': [1, None, None]}, {'bytes': '01'}]
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic | np.ndarray):
        return {"array": canonical(np.asarray(value).dtype), "data": canonical(value.tolist())}
    if isinstance(value, np.dtype):
        return _canonical_dtype(value)
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, slice):
        return {"slice": canonical([value.start, value.stop, value.step])}
    if value is Ellipsis:
        return {"ellipsis": True}
    if isinstance(value, type):
        return {"type": f"{value.__module__}.{value.__qualname__}"}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init
        }
        return {"class": type(value).__qualname__, **fields}
    if isinstance(value, Mapping):
        return [[canonical(k), canonical(v)] for k, v in _sorted(value.items())]
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, set | frozenset):
        return [canonical(v) for v in _sorted(value)]
    raise TypeError(f"cannot fingerprint a {type(value).__qualname__}: {value!r}")


def _sorted(items: Any) -> list[Any]:
    """``items`` in the order of their canonical JSON text (mapping keys of any type)."""
    return sorted(items, key=lambda item: json.dumps(canonical(item), sort_keys=True))


def _canonical_dtype(dtype: np.dtype[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"dtype": dtype.str}
    if dtype.names is not None:
        fields = dtype.fields
        assert fields is not None
        out["fields"] = [[n, _canonical_dtype(fields[n][0]), fields[n][1]] for n in dtype.names]
    if dtype.subdtype is not None:
        base, shape = dtype.subdtype
        out["subarray"] = [_canonical_dtype(base), list(shape)]
    if dtype.metadata:  # h5py: enum members, vlen base, reference kind
        out["metadata"] = canonical(dict(dtype.metadata))
    return out


#: The lock file of a work folder: rank 0 of the run working in it holds it (``flock``) and
#: writes its owner record in it (JSON: host, pid, start time).
LOCK = "lock"
#: How often :func:`take` tries a lock held by another process (a probe holds it an instant).
_TRIES = 20
_HELD, _TAKEN, _NO_LOCKS = "held", "taken", "no locks"


@dataclasses.dataclass(frozen=True)
class Owner:
    """Who holds a work folder: the owner record in its lock file.

    Attributes
    ----------
    host : str
        Host name of rank 0 of the run.
    pid : int
        Its process id on that host.
    started : str
        When it took the lock (UTC, ISO 8601).
    slurm : str
        Under SLURM, ``JOBID/RESTART`` (``SLURM_JOB_ID``, ``SLURM_RESTART_COUNT``), else "".
    """

    host: str
    pid: int
    started: str
    slurm: str = ""

    @classmethod
    def me(cls) -> Owner:
        """This process, now."""
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        job = os.environ.get("SLURM_JOB_ID", "")
        slurm = f"{job}/{os.environ.get('SLURM_RESTART_COUNT', '0')}" if job else ""
        return cls(socket.gethostname(), os.getpid(), now, slurm)

    def superseded(self) -> bool:
        """True when this process is a later run of the owner's SLURM job (requeued).

        SLURM runs one incarnation of a job at a time: the owner died with its node.

        >>> Owner("n1", 7, "t", "42/0").superseded()  # not under SLURM here
        False
        """
        mine, theirs = Owner.me().slurm.split("/"), self.slurm.split("/")
        if len(mine) != 2 or len(theirs) != 2 or mine[0] != theirs[0]:
            return False
        return theirs[1].isdigit() and mine[1].isdigit() and int(theirs[1]) < int(mine[1])

    @property
    def here(self) -> bool:
        """True when the owner ran on this host."""
        return self.host == socket.gethostname()

    def alive(self) -> bool:
        """False only when the owner is known to be gone: its host is this one, its pid not.

        A process on another host cannot be checked from here: it counts as alive.
        """
        if not self.here:
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def describe(self, folder: Path) -> str:
        """The owner and, on another host, how to clear its lock if it is gone (messages)."""
        if not self.host:
            return "it is taking or releasing the lock"
        where = f"pid {self.pid} on {self.host} since {self.started}"
        if self.here:
            return where
        return f"{where}; if it no longer runs there, delete {folder / LOCK} and rerun"


class BusyError(UsageError):
    """Another h5par run works in the work folder (exit status 2: this run wrote nothing)."""


class Lock:
    """The lock of a work folder, taken by :func:`take` and held until :meth:`release`.

    While it is held, the lock file holds this process's :class:`Owner` record and, where
    the file system supports it, an exclusive ``flock``.
    """

    def __init__(self, folder: Path, fd: int) -> None:
        self.folder, self.fd = folder, fd

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Let go of the work folder; it is removed when nothing but the lock is left in it."""
        if self.fd < 0:
            return
        try:
            if _same_file(self.folder / LOCK, self.fd):
                if [p.name for p in self.folder.iterdir()] == [LOCK]:
                    (self.folder / LOCK).unlink()  # still locked: nobody takes it meanwhile
                    self.folder.rmdir()
                else:
                    os.ftruncate(self.fd, 0)  # no owner: the next run takes over at once
        except OSError:
            pass  # the folder went (finalized or removed): nothing is left to clean
        finally:
            os.close(self.fd)  # releases the flock
            self.fd = -1


def take(folder: Path) -> Lock:
    """Take the lock of work folder ``folder`` (created if missing) for this run (rank 0).

    The lock is busy while another process holds its ``flock``, or while its owner record
    names an owner that may be alive: one on another host (``flock`` is per host on some
    file systems), or, where there is no ``flock``, a live process on this host. A lock
    left by a run that died on this host is taken over.

    Raises
    ------
    BusyError
        Another run works in ``folder`` (the message names the folder and its owner).
    UsageError
        The lock cannot be taken (the folder cannot be created, the lock file not opened).
    """
    for _ in range(_TRIES):
        fd = _open_lock(folder)
        if fd is None:
            continue
        try:
            state = _flock(fd, folder)
            if state != _HELD and _same_file(folder / LOCK, fd):
                owner = _owner(fd)
                if owner is not None and _busy_owner(owner, state):
                    raise BusyError(_busy(folder, owner))
                _write_owner(fd, Owner.me())
                return Lock(folder, fd)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # held (perhaps for an instant), or replaced meanwhile: try again
        time.sleep(0.05)
    check_free(folder)  # held all along: busy; else the folder keeps vanishing or changing
    raise UsageError(f"cannot lock work folder {str(folder)!r}: it keeps changing")


def holder(folder: Path) -> Owner | None:
    """The owner of the lock of work folder ``folder``; None when no run holds it.

    Changes nothing (the lock file is only read): ``h5par status`` asks this.
    """
    try:
        fd = os.open(folder / LOCK, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        owner = _owner(fd)
        try:
            state = _TAKEN if _try(fd, fcntl.LOCK_SH) else _HELD
        except OSError:
            state = _NO_LOCKS
        if state == _HELD:
            return owner or Owner("", 0, "")  # taking or releasing it right now
        return owner if owner is not None and _busy_owner(owner, state) else None
    finally:
        os.close(fd)


def check_free(folder: Path) -> None:
    """Raise :class:`BusyError` when a run holds the lock of work folder ``folder``."""
    owner = holder(folder)
    if owner is not None:
        raise BusyError(_busy(folder, owner))


def _busy_owner(owner: Owner, state: str) -> bool:
    """Whether a recorded owner still counts, given what ``flock`` said about the lock."""
    if owner.superseded():
        return False
    if state == _TAKEN:  # the flock was free: an owner on this host is dead
        return not owner.here
    return owner.alive()


def _busy(folder: Path, owner: Owner) -> str:
    return (
        f"another h5par run is working in {folder} ({owner.describe(folder)}): wait until it ends"
    )


def _open_lock(folder: Path) -> int | None:
    """The lock file opened for writing, or None when the folder vanished meanwhile."""
    _check_real_folder(folder)
    try:
        folder.mkdir(exist_ok=True)
    except FileNotFoundError as exc:
        if not folder.parent.is_dir():
            raise UsageError(f"output folder {str(folder.parent)!r} does not exist") from exc
        raise UsageError(f"output folder {str(folder.parent)!r} is not writable") from exc
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise UsageError(
                f"work folder {str(folder)!r}: name too long (valid: a file name of at most "
                f"{_name_max(folder.parent) - len('..h5par')} bytes, the work folder adds 7)"
            ) from exc
        raise UsageError(
            f"output folder {str(folder.parent)!r} is not writable ({exc.strerror})"
        ) from exc
    try:
        return os.open(folder / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except FileNotFoundError:
        return None  # the run that finished in it removed it: try again
    except OSError as exc:
        raise UsageError(f"cannot lock work folder {str(folder)!r}: {exc.strerror}") from exc


def _name_max(folder: Path) -> int:
    """The longest file name ``folder``'s file system allows (255 where it cannot be asked)."""
    try:
        return os.statvfs(folder).f_namemax
    except OSError:
        return 255


def _check_real_folder(folder: Path) -> None:
    """Refuse a work folder that is a link or no folder: h5par empties and removes it.

    A link to a scratch folder would have its other files deleted at a fresh start (and
    the output could not be renamed across file systems).
    """
    try:
        mode = os.lstat(folder).st_mode
    except OSError:
        return  # missing: created next
    if not stat.S_ISDIR(mode):
        what = "a symbolic link" if stat.S_ISLNK(mode) else "not a folder"
        raise UsageError(
            f"work folder {str(folder)!r} is {what} (valid: a folder h5par creates itself "
            "next to the output; move it away and rerun)"
        )


def _try(fd: int, kind: int) -> bool:
    """Try a ``flock`` of ``kind`` without waiting: False when another process holds it."""
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _flock(fd: int, folder: Path) -> str:
    """The exclusive ``flock``: taken, held by another process, or no locks on this file system."""
    try:
        return _TAKEN if _try(fd, fcntl.LOCK_EX) else _HELD
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            return _NO_LOCKS  # the owner record alone decides
        raise UsageError(f"cannot lock work folder {str(folder)!r}: {exc.strerror}") from exc


def _same_file(path: Path, fd: int) -> bool:
    """True when ``path`` still names the file open as ``fd`` (not removed and re-created)."""
    try:
        here, there = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _owner(fd: int) -> Owner | None:
    """The owner record in the lock file (None: empty, or not a record)."""
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"null")
        if data is None:
            return None
        fields = (str(data["host"]), int(data["pid"]), str(data["started"]))
        return Owner(*fields, str(data.get("slurm", "")))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _write_owner(fd: int, owner: Owner) -> None:
    data = json.dumps(dataclasses.asdict(owner)).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


def stat_identity(path: Path) -> dict[str, int]:
    """:func:`file_identity` of the file at ``path`` ({} if it is none: a family pattern)."""
    try:
        return file_identity(os.stat(path))
    except OSError:
        return {}


def file_identity(stat: os.stat_result) -> dict[str, int]:
    """What tells a file apart from a replacement: size, modification and change times, inode.

    ``cp -p`` and ``rsync -t`` keep the times; the change time and the inode still differ.
    """
    return {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
        "inode": stat.st_ino,
    }


def _key(path: str) -> str:
    return hashlib.sha1(path.encode()).hexdigest()[:16]


@dataclasses.dataclass
class Journal:
    """The progress of one run, as kept in ``journal.json`` of its work folder.

    Attributes
    ----------
    folder : Path
        The work folder.
    fingerprint : str
        :func:`fingerprint` of the run; a run with another one does not resume from it.
    units : dict
        ``{dataset path: number of units}``.
    done : dict
        ``{dataset path: [[start, stop], ...]}``: finished unit indices as merged intervals.
    staged : dict
        In-place runs: ``{dataset path: [unit, ...]}`` whose new data waits in ``redo/``.
    ranges : dict
        In-place runs: ``{dataset path: [[position, low, high], ...]}`` histogram ranges.
    left : dict
        In-place runs that stopped or failed: the file's size, times and inode as they left
        it (a resume checks that nothing else changed it since).
    read : dict
        Runs writing a new output: the input's size, times and inode when the run started
        (finalize refuses an input another process wrote meanwhile).
    """

    folder: Path
    fingerprint: str
    units: dict[str, int] = dataclasses.field(default_factory=dict)
    done: dict[str, list[list[int]]] = dataclasses.field(default_factory=dict)
    staged: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    ranges: dict[str, list[list[Any]]] = dataclasses.field(default_factory=dict)
    left: dict[str, int] = dataclasses.field(default_factory=dict)
    read: dict[str, int] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path) -> Journal | None:
        """The journal in ``folder``, or None when there is none or it cannot be read."""
        try:
            data = json.loads((folder / "journal.json").read_text())
            if data.pop("version") != VERSION:
                return None
            return cls(folder=folder, **data)
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def save(self) -> None:
        """Write ``journal.json`` atomically (a crash leaves the old or the new one)."""
        data = dataclasses.asdict(self)
        data.pop("folder")
        temp = self.folder / "journal.json.tmp"
        temp.write_text(json.dumps({"version": VERSION, **data}))
        os.replace(temp, self.folder / "journal.json")

    @property
    def output(self) -> Path:
        """The temporary output file."""
        return self.folder / OUTPUT

    @property
    def resumable(self) -> bool:
        """True: finished units are kept, a rerun of the same job resumes from them."""
        return True

    def remaining(self, path: str, count: int) -> list[int]:
        """Units of ``path`` (``count`` in all, as recorded) not finished yet, in order.

        >>> j = Journal(Path("."), "f", units={"/x": 6}, done={"/x": [[0, 2], [4, 5]]})
        >>> j.remaining("/x", 6)
        [2, 3, 5]
        """
        assert count == self.units[path], (
            f"{path}: {count} units, the journal has {self.units[path]}"
        )
        finished = {u for a, b in self.done.get(path, []) for u in range(a, b)}
        return [u for u in range(self.units[path]) if u not in finished]

    def finish(self, path: str, units: Sequence[int]) -> None:
        """Record ``units`` of ``path`` as finished (and no longer staged).

        >>> j = Journal(Path("."), "f", units={"/x": 9})
        >>> j.finish("/x", [0, 1, 5]); j.finish("/x", [2, 6]); j.done["/x"]
        [[0, 3], [5, 7]]
        """
        finished = {u for a, b in self.done.get(path, []) for u in range(a, b)} | set(units)
        merged: list[list[int]] = []
        for u in sorted(finished):
            if merged and merged[-1][1] == u:
                merged[-1][1] = u + 1
            else:
                merged.append([u, u + 1])
        self.done[path] = merged
        left = [u for u in self.staged.pop(path, []) if u not in finished]
        if left:
            self.staged[path] = left

    def stop_message(self, signal: str) -> str:
        """What a run stopped on ``signal`` at a block boundary tells the user."""
        done, total = self.count()
        return (
            f"stopped on {signal} at a block boundary with {done} of {total} units done; rerun "
            f"the same job to resume (work folder {self.folder})"
        )

    def count(self) -> tuple[int, int]:
        """(finished units, all units) over every dataset."""
        done = sum(b - a for intervals in self.done.values() for a, b in intervals)
        return done, sum(self.units.values())

    @property
    def changed(self) -> bool:
        """True once a unit is finished or staged: an in-place file is then partly updated."""
        return bool(self.count()[0] or self.staged)

    # Side files: statistics, staged blocks, broadcast sources (numpy, never pickles).

    def save_partials(self, path: str, parts: Sequence[Partial]) -> None:
        """Keep the combined statistics of the finished units of ``path``."""
        arrays: dict[str, Any] = {"n": np.array(len(parts))}
        for i, part in enumerate(parts):
            arrays[f"{i}_stats"] = np.array([part.count, part.total, part.mean, part.m2], "f8")
            arrays[f"{i}_count"] = np.array(part.count, "i8")
            for name in ("min", "max", "hist"):
                value = getattr(part, name)
                if value is not None:
                    arrays[f"{i}_{name}"] = np.asarray(value)
        temp = self.folder / f"partials-{_key(path)}.tmp.npz"
        np.savez(temp, **arrays)
        os.replace(temp, self.folder / f"partials-{_key(path)}.npz")

    def load_partials(self, path: str, count: int) -> list[Partial]:
        """The statistics kept for ``path`` (neutral ones when there are none)."""
        file = self.folder / f"partials-{_key(path)}.npz"
        if not file.exists():
            return [Partial() for _ in range(count)]
        with np.load(file, allow_pickle=False) as data:
            return [_partial(data, i) for i in range(int(data["n"]))]

    def redo_file(self, path: str, unit: int) -> Path:
        """Where the new data of an in-place unit waits until it is written."""
        return self.folder / "redo" / f"{_key(path)}-{unit}.npy"

    def stage(self, path: str, unit: int, data: np.ndarray) -> None:
        """Keep the new data of in-place unit ``unit`` of ``path`` (atomically) until written."""
        file = self.redo_file(path, unit)
        file.parent.mkdir(exist_ok=True)
        temp = file.with_suffix(".tmp.npy")
        with warnings.catch_warnings():  # an enum's members (dtype metadata) are not data
            warnings.filterwarnings("ignore", "metadata on a dtype", UserWarning)
            np.save(temp, data, allow_pickle=False)
        os.replace(temp, file)

    def mark_staged(self, path: str, units: Sequence[int]) -> None:
        """Record ``units`` of ``path`` as staged (their new data kept by :meth:`stage`).

        >>> j = Journal(Path("."), "f", units={"/x": 9}, staged={"/x": [4]})
        >>> j.mark_staged("/x", [2, 4]); j.staged
        {'/x': [2, 4]}
        """
        self.staged[path] = sorted({*self.staged.get(path, []), *units})

    def is_staged(self, path: str, unit: int) -> bool:
        """True when the new data of ``unit`` of ``path`` waits in ``redo/`` (a stopped run's)."""
        return unit in self.staged.get(path, []) and self.redo_file(path, unit).exists()

    def staged_data(self, path: str, unit: int) -> np.ndarray:
        """The new data :meth:`stage` kept for ``unit`` of ``path``."""
        return np.load(self.redo_file(path, unit), allow_pickle=False)

    def unstage(self, path: str, units: Sequence[int]) -> None:
        """Delete the kept new data of finished ``units`` of ``path`` (those that have any)."""
        for unit in units:
            self.redo_file(path, unit).unlink(missing_ok=True)

    def source_file(self, path: str, position: int) -> Path:
        """Where an in-place run keeps the broadcast source of kernel ``position``."""
        return self.folder / f"source-{_key(path)}-{position}.npy"

    def remove(self) -> None:
        """Delete the work folder and everything in it."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def clear(self) -> None:
        """Delete everything in the work folder but its lock (a fresh start under the lock)."""
        for entry in self.folder.iterdir():
            if entry.name == LOCK:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


class Journaling(Protocol):
    """What the data pass asks of a journal: :class:`Journal`, or :class:`NoJournal`.

    Every rank holds the same one; only rank 0 calls :meth:`save` and :meth:`save_partials`.
    """

    @property
    def resumable(self) -> bool:
        """True when finished units are kept for a rerun to resume from."""
        ...

    def remaining(self, path: str, count: int) -> list[int]:
        """Units of ``path`` (``count`` of them) not finished yet, in order."""
        ...

    def load_partials(self, path: str, count: int) -> list[Partial]:
        """The combined statistics of the finished units of ``path`` (``count`` reducers)."""
        ...

    def is_staged(self, path: str, unit: int) -> bool:
        """True when the new data of in-place ``unit`` of ``path`` was kept before writing."""
        ...

    def staged_data(self, path: str, unit: int) -> np.ndarray:
        """The new data kept for a staged ``unit`` of ``path``."""
        ...

    def stage(self, path: str, unit: int, data: np.ndarray) -> None:
        """Keep the new data of in-place ``unit`` of ``path`` until it is written."""
        ...

    def mark_staged(self, path: str, units: Sequence[int]) -> None:
        """Record ``units`` of ``path`` as staged."""
        ...

    def finish(self, path: str, units: Sequence[int]) -> None:
        """Record ``units`` of ``path`` as finished."""
        ...

    def unstage(self, path: str, units: Sequence[int]) -> None:
        """Delete the kept new data of finished ``units`` of ``path``."""
        ...

    def save(self) -> None:
        """Write the journal (rank 0)."""
        ...

    def save_partials(self, path: str, parts: Sequence[Partial]) -> None:
        """Keep the combined statistics of the finished units of ``path`` (rank 0)."""
        ...

    def stop_message(self, signal: str) -> str:
        """What a run stopped on ``signal`` at a block boundary tells the user."""
        ...


class NoJournal:
    """The journal of a pass that writes nothing: every unit to do, nothing kept.

    Statistics-only runs and read-only pre-passes use it; a rerun starts over.

    >>> NO_JOURNAL.remaining("/x", 3), NO_JOURNAL.is_staged("/x", 0), NO_JOURNAL.resumable
    ([0, 1, 2], False, False)
    >>> NO_JOURNAL.load_partials("/x", 1) == [Partial()]
    True
    """

    __slots__ = ()

    @property
    def resumable(self) -> bool:
        """False: nothing is kept, a rerun starts over."""
        return False

    def remaining(self, path: str, count: int) -> list[int]:
        """Every unit: none was finished before."""
        return list(range(count))

    def load_partials(self, path: str, count: int) -> list[Partial]:
        """Neutral statistics: no unit was finished before."""
        return [Partial() for _ in range(count)]

    def is_staged(self, path: str, unit: int) -> bool:
        """False: no unit is staged."""
        return False

    def staged_data(self, path: str, unit: int) -> np.ndarray:
        """No unit is staged (:meth:`is_staged` is always False)."""
        raise KeyError(f"{path}: unit {unit} is not staged (no journal)")

    def stage(self, path: str, unit: int, data: np.ndarray) -> None:
        """Nothing is kept."""

    def mark_staged(self, path: str, units: Sequence[int]) -> None:
        """Nothing is kept."""

    def finish(self, path: str, units: Sequence[int]) -> None:
        """Nothing is kept."""

    def unstage(self, path: str, units: Sequence[int]) -> None:
        """Nothing was kept."""

    def save(self) -> None:
        """Nothing is written."""

    def save_partials(self, path: str, parts: Sequence[Partial]) -> None:
        """Nothing is written."""

    def stop_message(self, signal: str) -> str:
        """Nothing to resume from."""
        return f"stopped on {signal}; nothing was written: rerun the job to start again"


#: The one :class:`NoJournal` (it holds nothing).
NO_JOURNAL = NoJournal()


def _partial(data: Any, i: int) -> Partial:
    _, total, mean, m2 = data[f"{i}_stats"].tolist()

    def scalar(name: str) -> Any:
        key = f"{i}_{name}"
        return data[key][()] if key in data.files else None

    hist = data[f"{i}_hist"] if f"{i}_hist" in data.files else None
    return Partial(int(data[f"{i}_count"]), total, mean, m2, scalar("min"), scalar("max"), hist)
