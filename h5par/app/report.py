"""Run summaries: one text block from rank 0, the same content as JSON (``--report``)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from h5par.core.sizes import format_size
from h5par.engine.batch import JobResult
from h5par.errors import UsageError

__all__ = ["check_report", "json_ready", "report_dict", "summary_text", "write_report"]


def _per_rank(result: JobResult, field: str) -> list[float]:
    totals = [0.0] * result.nranks
    for file in result.files:
        for r, value in zip(file.ranks, getattr(file.result, field), strict=True):
            totals[r] += value
    return totals


def json_ready(value: Any) -> Any:
    """``value`` with every NaN and infinity replaced by None (JSON's ``null``).

    JSON has no NaN or infinity; ``null`` is what JSON readers (``jq``, JavaScript's
    ``JSON.parse``, pandas) take as "no value", where strings would be read as text.

    >>> json_ready({"mean": float("nan"), "max": [1.5, float("inf")], "count": 0})
    {'mean': None, 'max': [1.5, None], 'count': 0}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def report_dict(result: JobResult) -> Any:
    """The run as plain JSON-ready data (NaN and infinities as None)."""
    return json_ready(_summary(result))


def _summary(result: JobResult) -> dict[str, Any]:
    """The run as plain data, numbers as they are (NaN where a statistic is undefined)."""
    busy = _per_rank(result, "busy_seconds")
    read, written = _per_rank(result, "bytes_read"), _per_rank(result, "bytes_written")
    mean = statistics.fmean(busy) if busy else 0.0
    data = {
        "started": result.started,
        "seconds": result.seconds,
        "ranks": result.nranks,
        "hosts": result.nhosts,
        "bytes_read": int(sum(read)),
        "bytes_written": int(sum(written)),
        "stored_bytes": sum(f.stored_bytes for f in result.files if not f.skipped),
        "totals": _totals(result),
        "throughput_bytes_per_second": (sum(read) + sum(written)) / result.seconds
        if result.seconds
        else 0.0,
        "per_rank": {
            "bytes_read": [int(b) for b in read],
            "bytes_written": [int(b) for b in written],
            "busy_seconds": busy,
            "busy_min": min(busy),
            "busy_median": statistics.median(busy),
            "busy_max": max(busy),
            "imbalance": max(busy) / mean if mean > 0 else 1.0,
        },
        "files": [
            {
                "input": f.input,
                "output": f.result.output,
                "ranks": f.ranks,
                "datasets": f.result.datasets,
                "reductions": f.result.reductions,
                "decomposition": f.result.decomposition,
                "seconds": f.result.seconds,
                "bytes_written": sum(f.result.bytes_written),
                "stored_bytes": f.stored_bytes,
                "resumed_units": f.result.resumed_units,
                "skipped": f.skipped,
            }
            for f in result.files
        ],
    }
    return data


def _totals(result: JobResult) -> dict[str, int]:
    """How many files were written, skipped (done before), failed; their bytes on disk.

    A failure on any file ends the run with exit status 1 and no summary, so ``failed``
    is 0 in every summary; it is there for readers who look for it.
    """
    skipped = sum(1 for f in result.files if f.skipped)
    reduced = sum(1 for f in result.files if not f.skipped and f.result.output is None)
    return {
        "files": len(result.files),
        "written": len(result.files) - skipped - reduced,
        "statistics_only": reduced,
        "skipped": skipped,
        "failed": 0,
        "stored_bytes": sum(f.stored_bytes for f in result.files),
    }


#: Above this many files the summary lists only the slowest (``--verbose``: every file).
LISTED_FILES = 10
#: How many of the slowest files a long summary shows.
SLOWEST = 3


def summary_text(result: JobResult, verbose: bool = False) -> str:
    """The summary ``h5par run`` prints from rank 0.

    Totals first; then every file when there are at most :data:`LISTED_FILES` (or
    ``verbose``), else the :data:`SLOWEST` slowest; the statistics of every reduction.
    """
    data = _summary(result)
    per_rank, totals = data["per_rank"], data["totals"]
    datasets = sum(len(f["datasets"]) for f in data["files"])
    reduced = totals["statistics_only"]
    stats = f", {reduced} statistics only" if reduced else ""
    hosts = f" of {data['hosts']} hosts" if data["hosts"] > 1 else ""
    lines = [
        f"h5par run: {len(data['files'])} file(s), {datasets} dataset(s) on {data['ranks']} rank(s){hosts} in {data['seconds']:.2f} s",
        f"  {totals['files']} file{'' if totals['files'] == 1 else 's'}: {totals['written']} written, {totals['skipped']} skipped, "
        f"{totals['failed']} failed{stats}, {format_size(totals['stored_bytes'])} on disk",
        f"  read {format_size(data['bytes_read'])}, wrote {format_size(data['stored_bytes'])} on disk "
        f"({format_size(data['bytes_written'])} processed, uncompressed), "
        f"{data['throughput_bytes_per_second'] / 1e6:.1f} MB/s",
        f"  busy time per rank: min {per_rank['busy_min']:.2f} s, median {per_rank['busy_median']:.2f} s, "
        f"max {per_rank['busy_max']:.2f} s, imbalance {per_rank['imbalance']:.2f} (max/mean)",
    ]
    files = data["files"]
    if verbose or len(files) <= LISTED_FILES:
        lines += [line for f in files for line in _file_lines(f, data["ranks"])]
        return "\n".join(lines)
    done = [f for f in files if not f["skipped"]]
    slowest = sorted(done, key=lambda f: -f["seconds"])[:SLOWEST]
    if slowest:
        lines.append(f"  slowest {len(slowest)} of {len(done)} file(s) processed:")
        lines += ["  " + _file_line(f, data["ranks"]) for f in slowest]
    lines += [line for f in done for line in _reduction_lines(f)]
    lines.append("  (--verbose lists every file; --report FILE.json has them all)")
    return "\n".join(lines)


def _file_lines(f: dict[str, Any], nranks: int) -> list[str]:
    """A file's line and the statistics of its reductions."""
    if f["skipped"]:
        return [f"  {f['input']} -> {f['output']} [done by an earlier run of this job]"]
    return [_file_line(f, nranks), *_reduction_lines(f)]


def _file_line(f: dict[str, Any], nranks: int) -> str:
    """``input -> output [who] seconds, size on disk`` of a processed file."""
    who = "all ranks" if len(f["ranks"]) == nranks else f"rank {f['ranks'][0]}"
    resumed = f" (resumed: {f['resumed_units']} units done before)" if f["resumed_units"] else ""
    stored = f", {format_size(f['stored_bytes'])} on disk" if f["output"] else ""
    return (
        f"  {f['input']} -> {f['output'] or '(statistics only)'} [{who}] "
        f"{f['seconds']:.2f} s{stored}{resumed}"
    )


def _reduction_lines(f: dict[str, Any]) -> list[str]:
    return [
        f"    {path}: " + ", ".join(f"{op}={_short(v)}" for op, v in stats.items())
        for path, stats in f["reductions"].items()
    ]


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):  # a histogram
        return f"histogram({len(value['counts'])} bins)"
    return str(value)


def check_report(path: str) -> None:
    """Refuse a ``--report`` path that cannot be written, before any work (rank 0).

    The file is opened for appending (an existing report is not changed; a new one is
    removed again), so read-only mounts, missing folders and directories are found here.

    Raises
    ------
    UsageError
        The path cannot be written, with the system's reason.
    """
    target = Path(path)
    existed = target.exists()
    try:
        with open(target, "a"):
            pass
    except OSError as exc:
        raise UsageError(
            f"--report {path!r} cannot be written ({exc.strerror or exc}); give a file in a "
            "writable folder"
        ) from exc
    if not existed:
        target.unlink()


def write_report(result: JobResult, path: str) -> None:
    """Write the JSON report (rank 0 only)."""
    with open(path, "w") as out:
        json.dump(report_dict(result), out, indent=2, allow_nan=False)
        out.write("\n")
