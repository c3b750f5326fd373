"""Resumable progress: the work folder kept next to an output, and its journal.

A run that writes builds everything in a *work folder*, ``.NAME.h5par/`` next to its
destination: the temporary output (``output.h5``), the journal listing the finished *units*
of every dataset (global blocks that do not depend on the rank count), the
combined statistics of finished units (``partials-*.npz``) and, for in-place runs, the new
data of a block staged before it overwrites the old one (``redo/``), the broadcast source
rows and the histogram ranges computed from the unmodified input.

A run that writes nothing (statistics only, and the read-only pre-passes of any run) keeps no
journal: :class:`NoJournal` stands for it, with the interface the data pass uses
(:class:`Journaling`).

Only rank 0 writes the journal: its whole state (``journal.json``, atomically: a temporary
file renamed over it) when a run starts, resumes or stops, and in between one appended line
per change (``journal-G.log``), so a checkpoint costs what changed, not what the run holds.
Rank 0 also holds the work folder's ``lock`` (:mod:`h5par.engine.lock`) from before it
resumes or starts a run until the output is in place: one run per work folder, on any node.
The journal's :func:`fingerprint` holds explicit values only (:func:`canonical`). Nothing
here talks MPI or HDF5.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from h5par.core.intervals import covers, intervals, merge, size
from h5par.engine.lock import LOCK
from h5par.errors import UsageError
from h5par.kernels import Partial
from h5par.kernels.user import function_name

__all__ = [
    "NO_JOURNAL",
    "DamagedJournalError",
    "Journal",
    "Journaling",
    "NoJournal",
    "canonical",
    "file_identity",
    "fingerprint",
    "stat_identity",
    "work_folder",
    "work_folder_of",
]

VERSION = 1
OUTPUT = "output.h5"
#: The journal's state as of its last :meth:`Journal.save`; ``journal-G.log`` holds the
#: changes recorded since (generation ``G``), one JSON line per :meth:`Journal.checkpoint`.
STATE = "journal.json"
_SAVED = ("fingerprint", "units", "done", "staged", "ranges", "left", "read", "generation", "job")


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
    if value is None or type(value) in _PLAIN:  # the common cases first (bool: a subclass)
        return value
    if type(value) in (list, tuple):
        return [canonical(v) for v in value]
    if type(value) is dict:
        return _sorted([canonical(k), canonical(v)] for k, v in value.items())
    if isinstance(value, bool | int | float | str):
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
        fields = {name: canonical(getattr(value, name)) for name in _init_fields(type(value))}
        return {"class": type(value).__qualname__, **fields}
    if isinstance(value, Mapping):
        return _sorted([canonical(k), canonical(v)] for k, v in value.items())
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, set | frozenset):
        return _sorted(canonical(v) for v in value)
    if callable(value):  # a user's function: its name (its module's code is digested apart)
        return {"callable": function_name(value)}
    raise TypeError(f"cannot fingerprint a {type(value).__qualname__}: {value!r}")


#: Types :func:`canonical` returns as they are.
_PLAIN = frozenset({bool, int, float, str})


@functools.cache
def _init_fields(cls: type) -> tuple[str, ...]:
    """The names of the ``init`` fields of dataclass ``cls``."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.init)


def _sorted(items: Iterable[Any]) -> list[Any]:
    """Canonical ``items`` in the order of their JSON text (mapping keys of any type).

    Pairs ``[key, value]`` with distinct key texts sort as their keys' texts do (a key's
    text is never a proper prefix of another's followed by ``,``), so only those are encoded.

    >>> _sorted([["b", 1], ["a", [2]], ["ab", 0]]), _sorted([2, 10, 1])
    ([['a', [2]], ['ab', 0], ['b', 1]], [1, 10, 2])
    """
    listed = list(items)
    if all(isinstance(item, list) and len(item) == 2 for item in listed):
        keys = [json.dumps(item[0], sort_keys=True) for item in listed]
        if len(set(keys)) == len(keys):
            order = sorted(range(len(listed)), key=keys.__getitem__)
            return [listed[i] for i in order]
    return sorted(listed, key=lambda item: json.dumps(item, sort_keys=True))


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


class DamagedJournalError(UsageError):
    """A journal that exists but cannot be read whole (exit status 2)."""


def _write_all(path: Path, data: bytes, durable: bool, append: bool = False) -> None:
    """Write ``data`` to ``path`` whole (a short write is retried), synced if ``durable``."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            if written <= 0:
                raise OSError(errno.EIO, f"cannot write {path}: nothing written")
            view = view[written:]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the file system allows opening it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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
    generation : int
        Counts :meth:`save` calls; the log of changes since is ``journal-GENERATION.log``.
    job : str
        The digest of the job file of the run (``h5par_job_sha256``; "" without one, and in
        journals of versions before it was kept).
    changes : list
        Changes not yet written to the log (:meth:`checkpoint`).
    """

    folder: Path
    fingerprint: str
    units: dict[str, int] = dataclasses.field(default_factory=dict)
    done: dict[str, list[list[int]]] = dataclasses.field(default_factory=dict)
    staged: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    ranges: dict[str, list[list[Any]]] = dataclasses.field(default_factory=dict)
    left: dict[str, int] = dataclasses.field(default_factory=dict)
    read: dict[str, int] = dataclasses.field(default_factory=dict)
    generation: int = 0
    job: str = ""
    changes: list[dict[str, Any]] = dataclasses.field(default_factory=list, repr=False)

    @classmethod
    def load(cls, folder: Path) -> Journal | None:
        """The journal in ``folder`` with its log replayed; None when there is none.

        Raises
        ------
        DamagedJournalError
            The state cannot be read, or a line of the log before its last is damaged:
            units recorded there as finished would be taken for units still to do.
        """
        state = folder / STATE
        if not state.exists():
            return None
        try:
            data = json.loads(state.read_text())
            if data.pop("version") != VERSION:
                return None
            journal = cls(folder=folder, **data)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise DamagedJournalError(f"journal {str(state)!r} cannot be read ({exc})") from exc
        journal._replay()
        return journal

    def save(self, durable: bool = True) -> None:
        """Write the whole state atomically, in a new generation with an empty log.

        A crash leaves the old state and its log, or the new state; a log is replayed only
        onto the state of its own generation. Used when a run starts, resumes or stops:
        :meth:`checkpoint` records progress in between. ``durable`` syncs the state and
        the rename to disk; the journal of a new output need not be (its output is not
        synced either): a state a power cut damages makes the next run start over.
        """
        old = self._log
        self.generation += 1
        data = {name: getattr(self, name) for name in _SAVED}
        temp = self.folder / f"{STATE}.tmp"
        _write_all(temp, json.dumps({"version": VERSION, **data}).encode(), durable)
        os.replace(temp, self.folder / STATE)
        if durable:
            _sync_folder(self.folder)
        old.unlink(missing_ok=True)
        self.changes.clear()

    def checkpoint(self, write: bool = True, durable: bool = False) -> None:
        """Append what changed since the last checkpoint to the log.

        Costs what changed (one line per :meth:`finish` or :meth:`mark_staged`), not the
        whole state. ``durable`` syncs the log to disk before returning (in place: the
        staged data of finished units is deleted next). ``write=False`` forgets the changes
        instead: every rank keeps the state, rank 0 alone writes it.
        """
        text = "".join(json.dumps(change) + "\n" for change in self.changes)
        self.changes.clear()
        if write and text:
            _write_all(self._log, text.encode(), durable, append=True)

    def updated(self) -> float:
        """When the journal was last written (seconds since the epoch; OSError if removed)."""
        times = [p.stat().st_mtime for p in (self.folder / STATE, self._log) if p.exists()]
        if not times:
            raise FileNotFoundError(self.folder / STATE)
        return max(times)

    @property
    def _log(self) -> Path:
        return self.folder / f"journal-{self.generation}.log"

    def _replay(self) -> None:
        """Apply the log of this generation; its last line, if a kill cut it short, is not.

        Every line but the last ends with a newline; a damaged one of those is an error
        (:class:`DamagedJournalError`), never skipped.
        """
        try:
            *lines, _torn = self._log.read_text().split("\n")  # the last: maybe cut short
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise DamagedJournalError(f"journal log {str(self._log)!r}: {exc}") from exc
        for number, line in enumerate(lines, 1):
            try:
                change = json.loads(line)
                kind, path, value = change["kind"], change["path"], change["value"]
            except (ValueError, TypeError, KeyError) as exc:
                raise DamagedJournalError(
                    f"journal log {str(self._log)!r} is damaged at line {number} ({exc})"
                ) from exc
            if kind == "finish":
                self._finish(path, value)
            elif kind == "staged":
                self._mark_staged(path, value)
            elif kind == "range":
                self.ranges.setdefault(path, []).append(value)

    def _change(self, kind: str, path: str, value: Any) -> None:
        self.changes.append({"kind": kind, "path": path, "value": value})

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

        >>> j = Journal(Path("."), "f", units={"/x": 9}, staged={"/x": [2, 4]})
        >>> j.finish("/x", [0, 1, 5]); j.finish("/x", [2, 6]); j.done["/x"], j.staged
        ([[0, 3], [5, 7]], {'/x': [4]})
        """
        spans = intervals(units)
        self._finish(path, spans)
        self._change("finish", path, spans)

    def _finish(self, path: str, spans: Sequence[Sequence[int]]) -> None:
        self.done[path] = done = merge(self.done.get(path, []), spans)
        left = [u for u in self.staged.pop(path, []) if not covers(done, u)]
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
        return sum(size(spans) for spans in self.done.values()), sum(self.units.values())

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
        self._mark_staged(path, units)
        self._change("staged", path, list(units))

    def _mark_staged(self, path: str, units: Sequence[int]) -> None:
        self.staged[path] = sorted({*self.staged.get(path, []), *units})

    def keep_range(self, path: str, position: int, low: Any, high: Any) -> None:
        """Keep the data range the histogram of kernel ``position`` of ``path`` uses.

        JSON numbers: exact for every integer and float the data can hold.
        """
        value = [position, np.asarray(low).item(), np.asarray(high).item()]
        self.ranges.setdefault(path, []).append(value)
        self._change("range", path, value)

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

    def checkpoint(self, write: bool = True, durable: bool = False) -> None:
        """Write what changed since the last checkpoint (rank 0); the others pass False."""
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

    def checkpoint(self, write: bool = True, durable: bool = False) -> None:
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
