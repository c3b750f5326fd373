"""Series over many files (``input.combine``): one output from all inputs.

A job with ``combine`` reads one *joined file* (:mod:`h5par.hdf5.series`: the first file's
hierarchy, each joined dataset a virtual dataset over every file) and runs on it like on
any input: units are boxes of the joined arrays, each rank reads the part of each file its
units cover, kernels (a time mean is ``reduce`` along axis 0) and resume work as always.

The joined file lies next to the output, hidden, named by the :func:`digest` of the
series (its settings and every file's identity): a rerun and a resume find it again, a
changed file makes another one. The run that publishes the output removes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from h5par.core.series import COMBINES
from h5par.engine.folders import check_output_folder, make_output_folder
from h5par.engine.journal import stat_identity
from h5par.errors import H5ParError, UsageError
from h5par.hdf5.series import survey, write_joined
from h5par.hdf5.subfiles import parts_folder

__all__ = [
    "Series",
    "check_unchanged",
    "digest",
    "identity",
    "joined_file",
    "label",
    "planned",
    "prepare",
    "remove_joined",
    "series_of",
    "without",
]


@dataclasses.dataclass(frozen=True)
class Series:
    """A job's ``input.combine``: how its files make one input.

    Attributes
    ----------
    combine : str
        ``"concat"`` (along ``axis``) or ``"stack"`` (a new axis 0).
    axis : int
        The axis concat joins.
    order_by : str or None
        A dataset whose first value orders the files (None: their order in ``sources``).
    sources : tuple of Path
        The files: a glob's in natural order of their names, a list's as listed.
    patterns : tuple of str or None
        ``input.datasets``: what is joined (None: the default, see :mod:`h5par.hdf5.series`).
    virtual : bool
        ``output.layout = "virtual"``: the output maps the files, no data is copied.
    """

    combine: str
    axis: int
    order_by: str | None
    sources: tuple[Path, ...]
    patterns: tuple[str, ...] | None = None
    virtual: bool = False


def series_of(inp: Mapping[str, Any], layout: str, sources: Sequence[Path]) -> Series | None:
    """The series ``[input]`` asks for (None: each file on its own), validated."""
    combine = inp.get("combine")
    if combine is None:
        extra = next((k for k in ("axis", "order_by") if k in inp), None)
        if extra is not None:
            raise UsageError(f"input.{extra} needs input.combine (valid: {', '.join(COMBINES)})")
        return None
    if combine not in COMBINES:
        raise UsageError(f"input.combine = {combine!r} (valid: {', '.join(COMBINES)})")
    axis = inp.get("axis", 0)
    if combine == "stack" and "axis" in inp:
        raise UsageError("input.axis applies to combine = 'concat' (stack adds a new axis 0)")
    if isinstance(axis, bool) or not isinstance(axis, int) or axis < 0:
        raise UsageError(f"input.axis = {axis!r} (valid: an axis number, 0 or more)")
    order_by = inp.get("order_by")
    if order_by is not None and (not isinstance(order_by, str) or not order_by.strip("/")):
        raise UsageError(f"input.order_by = {order_by!r} (valid: the path of a dataset)")
    datasets = inp.get("datasets")
    patterns = (
        None if datasets is None else tuple([datasets] if isinstance(datasets, str) else datasets)
    )
    path = None if order_by is None else "/" + order_by.lstrip("/")
    return Series(combine, axis, path, tuple(sources), patterns, layout == "virtual")


def without(series: Series, output: Path) -> Series:
    """``series`` without ``output`` (and a subfiled output's parts) among its files."""
    mine = {output.resolve(), parts_folder(output).resolve()}
    kept = tuple(p for p in series.sources if p.resolve() not in mine)
    if not kept:
        raise UsageError(f"input.path matches only the output {str(output)!r}")
    return dataclasses.replace(series, sources=kept)


def digest(series: Series) -> str:
    """What a joined file is made of: the settings and each file's path and identity."""
    folders: dict[Path, str] = {}  # links resolved once per folder, not once per file
    for p in series.sources:
        if p.parent not in folders:
            folders[p.parent] = os.path.realpath(p.parent)
    where = [os.path.join(folders[p.parent], p.name) for p in series.sources]
    parts = dataclasses.asdict(series) | {
        "sources": [[w, stat_identity(p)] for w, p in zip(where, series.sources, strict=True)]
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def joined_file(series: Series, output: Path) -> Path:
    """Where the joined file of ``series`` for ``output`` lies (hidden, beside it)."""
    return output.with_name(f"{_prefix(output)}{digest(series)[:16]}.h5")


def _prefix(output: Path) -> str:
    """The name of every joined file of ``output`` up to the digest (short enough a name)."""
    name = output.name
    if len(name) > 150:  # a file name has at most 255 bytes: keep room for the rest
        name = f"{name[:120]}~{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return f".{name}.h5par-series-"


def prepare(series: Series, path: Path) -> None:
    """Write the joined file at ``path`` unless it is there (rank 0; job errors if bad).

    The files are checked first; then the output's folder is made if it is missing.
    """
    if path.is_file():
        return
    patterns = None if series.patterns is None else list(series.patterns)
    found = survey(series.sources, series.combine, series.axis, patterns, series.order_by)
    check_output_folder(path.parent)
    make_output_folder(path.parent)
    write_joined(found, path)


@contextmanager
def planned(series: Series, output: Path) -> Iterator[Path]:
    """A joined file for ``h5par plan``: the run's if there, else a temporary one."""
    path = joined_file(series, output)
    if path.is_file():
        yield path
        return
    near = output.parent if output.parent.is_dir() else None  # else the system's
    with tempfile.TemporaryDirectory(prefix=".h5par-plan-", dir=near) as folder:
        temp = Path(folder) / path.name
        prepare(series, temp)
        yield temp


def remove_joined(output: Path) -> None:
    """Remove the joined files of ``output`` (this series' and older ones; rank 0)."""
    prefix = _prefix(output)
    for path in output.parent.glob(".*.h5par-series-*.h5"):
        if path.name.startswith(prefix):
            path.unlink(missing_ok=True)


def check_unchanged(series: Series, output: Path, joined: Path) -> None:
    """Refuse to publish an output whose files changed while the run read them (rank 0)."""
    if joined_file(series, output) != joined:
        raise H5ParError(
            f"a file of the series changed while this run read it ({len(series.sources)} "
            f"files from {str(series.sources[0])!r}: size, times or inode differ): the output "
            "would mix old and new data and is not written; rerun once nothing writes them"
        )


def label(series: Series) -> str:
    """How summaries and plans name a series: ``5 file(s) concat (a.nc ... e.nc)``."""
    names = [str(p) for p in series.sources]
    ends = names[0] if len(names) == 1 else f"{names[0]} ... {names[-1]}"
    return f"{len(names)} file(s) {series.combine} ({ends})"


def identity(series: Series) -> str:
    """The series' identity as an output records it (``h5par_input``)."""
    return f"series:{digest(series)}"
