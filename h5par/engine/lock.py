"""The work folder's lock: one run per work folder, on any node.

Rank 0 of a run holds the folder's ``lock`` file (``flock``) from before it resumes or
starts the run until the output is in place, and writes its owner record in it (host, pid,
start time, SLURM job). A lock another live process holds is refused with one line naming
it; a stale one (its host's process gone) is taken over; where the file system has no
locks, the owner record alone decides. Nothing here talks MPI or HDF5.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import functools
import json
import os
import socket
import stat
import time
from pathlib import Path

from h5par.errors import UsageError

__all__ = ["LOCK", "BusyError", "Lock", "Owner", "check_free", "holder", "mount_types", "take"]


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
            mine = _same_file(self.folder / LOCK, self.fd)
            if mine and [p.name for p in self.folder.iterdir()] == [LOCK]:
                (self.folder / LOCK).unlink()  # still locked: nobody takes it meanwhile
                self.folder.rmdir()
        except OSError:
            pass  # the folder went (finalized or removed): nothing is left to clean
        finally:
            # No owner: a kept folder's next run takes over at once. A removed lock file's
            # record goes too: its blocks freed before the close, not by it (~0.3 ms on ext4).
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
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
    """Write ``owner`` into the lock file; ``fsync`` it where other hosts read it.

    On a local file system every process sees the page cache: the ``fsync`` (one per output
    file) would only make the record outlive a crash of the host, which ends the owner too.
    """
    data = json.dumps(dataclasses.asdict(owner)).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    if not _local(os.fstat(fd).st_dev):
        os.fsync(fd)


#: File systems whose files live on this host alone: no other host reads a lock file there.
LOCAL_FILE_SYSTEMS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "f2fs", "jfs", "reiserfs", "zfs", "overlay"}
)


def _local(device: int) -> bool:
    """True when the file system of ``device`` (``st_dev``) is known to be local.

    Unknown (no ``/proc/self/mountinfo``, a device not listed): False, the safe answer.
    """
    return _mount_type(device) in LOCAL_FILE_SYSTEMS


@functools.lru_cache(maxsize=64)
def _mount_type(device: int) -> str | None:
    """The type of the file system of ``device``, read once per process (None: unknown)."""
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return None
    return mount_types(text).get((os.major(device), os.minor(device)))


def mount_types(mountinfo: str) -> dict[tuple[int, int], str]:
    """``{(major, minor): file system type}`` from the text of ``/proc/self/mountinfo``.

    A device mounted twice with different types counts as neither (it maps to "").

    >>> mount_types("36 35 98:0 / /mnt rw,noatime master:1 - ext4 /dev/root rw")
    {(98, 0): 'ext4'}
    """
    found: dict[tuple[int, int], str] = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields or len(fields) < 3:
            continue
        major, _, minor = fields[2].partition(":")
        if not (major.isdigit() and minor.isdigit()):
            continue
        kind = (fields[fields.index("-") + 1 :] or [""])[0]
        key = (int(major), int(minor))
        found[key] = kind if found.get(key, kind) == kind else ""
    return found
