"""Resumable progress: the work folder kept next to an output, and its journal.

A run that writes builds everything in a *work folder*, ``.NAME.h5par/`` next to its
destination: the temporary output (``output.h5``), ``journal.json`` listing the finished
*units* of every dataset (global blocks that do not depend on the rank count), the
combined statistics of finished units (``partials-*.npz``) and, for in-place runs, the new
data of a block staged before it overwrites the old one (``redo/``), the broadcast source
rows and the histogram ranges computed from the unmodified input.

Only rank 0 writes the journal (atomically: a temporary file renamed over it). Nothing here
talks MPI or HDF5.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .kernels import Partial

__all__ = ["Journal", "fingerprint", "hold", "in_use", "work_folder"]

VERSION = 1
OUTPUT = "output.h5"


def work_folder(destination: Path) -> Path:
    """The work folder of a run writing ``destination`` (in the same folder: same file system).

    >>> work_folder(Path("/data/clean.h5"))
    PosixPath('/data/.clean.h5.h5par')
    """
    return destination.parent / f".{destination.name}.h5par"


def fingerprint(parts: Mapping[str, Any]) -> str:
    """A digest of what determines the result: the job, the input, the unit sizes.

    >>> fingerprint({"a": 1}) == fingerprint({"a": 1}) != fingerprint({"a": 2})
    True
    """
    text = json.dumps(parts, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def in_use(folder: Path) -> bool:
    """True when a running h5par holds the lock of work folder ``folder``.

    File systems without locks (some NFS/Lustre mounts) answer False: nothing to check.
    """
    lock = folder / "lock"
    if not lock.exists():
        return False
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


@contextlib.contextmanager
def hold(folder: Path) -> Iterator[None]:
    """Hold the lock of work folder ``folder`` while a run works in it (see :func:`in_use`)."""
    with open(folder / "lock", "a") as handle:
        with contextlib.suppress(OSError):  # a rare race, or no locks here: in_use looked
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield


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
    """

    folder: Path
    fingerprint: str
    units: dict[str, int] = dataclasses.field(default_factory=dict)
    done: dict[str, list[list[int]]] = dataclasses.field(default_factory=dict)
    staged: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    ranges: dict[str, list[list[Any]]] = dataclasses.field(default_factory=dict)

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

    def remaining(self, path: str) -> list[int]:
        """Units of ``path`` not finished yet, in order.

        >>> j = Journal(Path("."), "f", units={"/x": 6}, done={"/x": [[0, 2], [4, 5]]})
        >>> j.remaining("/x")
        [2, 3, 5]
        """
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

    def count(self) -> tuple[int, int]:
        """(finished units, all units) over every dataset."""
        done = sum(b - a for intervals in self.done.values() for a, b in intervals)
        return done, sum(self.units.values())

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

    def source_file(self, path: str, position: int) -> Path:
        """Where an in-place run keeps the broadcast source of kernel ``position``."""
        return self.folder / f"source-{_key(path)}-{position}.npy"

    def remove(self) -> None:
        """Delete the work folder and everything in it."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _partial(data: Any, i: int) -> Partial:
    _, total, mean, m2 = data[f"{i}_stats"].tolist()

    def scalar(name: str) -> Any:
        key = f"{i}_{name}"
        return data[key][()] if key in data.files else None

    hist = data[f"{i}_hist"] if f"{i}_hist" in data.files else None
    return Partial(int(data[f"{i}_count"]), total, mean, m2, scalar("min"), scalar("max"), hist)
