"""Reductions along axes: per-element partials of pieces, combined, then finished (pure).

``reduce`` with ``axis`` turns, say, a (time, z, y, x) field into its (z, y, x) time mean.
The runner reads each output block's input in pieces along the reduced axes; each piece
gives an :class:`AxisPartial` (arrays over the output block), pieces combine exactly for
count/min/max and in float64 for sums (Chan et al.'s update for variances), and
:func:`finish` turns the combined partial into the output block.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["AXIS_OPS", "AxisPartial", "axis_partial", "finish", "result_dtype"]

#: Operations ``reduce`` supports along axes.
AXIS_OPS = ("min", "max", "sum", "mean", "std", "count")


@dataclasses.dataclass(frozen=True)
class AxisPartial:
    """Statistics of one piece, per output element (only what ``op`` needs is kept)."""

    count: np.ndarray  # int64: elements counted
    total: np.ndarray | None = None  # float64 sum (sum, mean)
    mean: np.ndarray | None = None  # float64 mean (std)
    m2: np.ndarray | None = None  # float64 sum of squared deviations (std)
    extreme: np.ndarray | None = None  # min or max in the data's dtype

    def combine(self, other: AxisPartial, op: str) -> AxisPartial:
        """Both pieces together (elementwise; a zero count is the neutral element)."""
        n = self.count + other.count
        out = {"count": n}
        if self.total is not None and other.total is not None:
            out["total"] = self.total + other.total
        if op == "std":
            assert self.mean is not None and other.mean is not None
            assert self.m2 is not None and other.m2 is not None
            with np.errstate(invalid="ignore", divide="ignore"):
                delta = other.mean - self.mean
                share = np.where(n > 0, other.count / np.maximum(n, 1), 0.0)
                out["mean"] = self.mean + delta * share
                out["m2"] = self.m2 + other.m2 + delta * delta * self.count * share
            empty = (self.count == 0, other.count == 0)
            out["mean"] = np.where(empty[0], other.mean, np.where(empty[1], self.mean, out["mean"]))
            out["m2"] = np.where(empty[0], other.m2, np.where(empty[1], self.m2, out["m2"]))
        if op in ("min", "max"):
            assert self.extreme is not None and other.extreme is not None
            pick = np.minimum if op == "min" else np.maximum
            both = pick(self.extreme, other.extreme)  # NaN propagates, as numpy.min/max
            out["extreme"] = np.where(
                self.count == 0, other.extreme, np.where(other.count == 0, self.extreme, both)
            )
        return AxisPartial(**out)


def axis_partial(
    x: np.ndarray, axes: tuple[int, ...], op: str, valid: np.ndarray | None
) -> AxisPartial:
    """Statistics of piece ``x`` along ``axes``; ``valid`` marks the elements counted.

    Examples
    --------
    >>> x = np.array([[1.0, 5.0], [3.0, 9.0]])
    >>> p = axis_partial(x, (0,), "mean", None)
    >>> p.count.tolist(), p.total.tolist()
    ([2, 2], [4.0, 14.0])
    """
    kept = tuple(n for a, n in enumerate(x.shape) if a not in axes)
    if valid is None:
        count = np.full(kept, int(np.prod([x.shape[a] for a in axes])), np.int64)
    else:
        count = np.asarray(np.sum(valid, axis=axes, dtype=np.int64))
    where: Any = True if valid is None else valid
    if op in ("sum", "mean"):
        total = np.asarray(np.sum(x, axis=axes, dtype=np.float64, where=where))
        return AxisPartial(count, total=total)
    if op == "std":
        total = np.sum(x, axis=axes, dtype=np.float64, where=where)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, total / np.maximum(count, 1), 0.0)
        deviation = np.subtract(x, np.expand_dims(mean, axes), dtype=np.float64)
        m2 = np.sum(np.square(deviation, out=deviation), axis=axes, where=where)
        return AxisPartial(count, mean=mean, m2=m2)
    if op in ("min", "max"):
        reduce = np.min if op == "min" else np.max
        if valid is None:
            return AxisPartial(count, extreme=reduce(x, axis=axes))
        return AxisPartial(
            count, extreme=reduce(x, axis=axes, where=where, initial=_identity(x.dtype, op))
        )
    return AxisPartial(count)


def _identity(dtype: np.dtype[Any], op: str) -> Any:
    """The neutral element of min/max for ``dtype`` (replaced where nothing was counted)."""
    if dtype.kind == "f":
        return np.inf if op == "min" else -np.inf
    info = np.iinfo(dtype) if dtype.kind in "iu" else None
    if info is None:  # bool
        return op == "min"
    return info.max if op == "min" else info.min


def result_dtype(op: str, dtype: np.dtype[Any]) -> np.dtype[Any]:
    """Output dtype: min/max keep ``dtype``, count is int64, sum/mean/std float64."""
    if op in ("min", "max"):
        return dtype
    return np.dtype(np.int64 if op == "count" else np.float64)


def finish(
    part: AxisPartial, op: str, ddof: int, dtype: np.dtype[Any], missing: Any = None
) -> np.ndarray:
    """The output block of ``op``; elements with nothing counted get ``missing``.

    ``missing`` defaults to NaN (0 for sum and count, as numpy's ``nansum``); a dataset's
    ``_FillValue`` is passed here so that empty cells stay marked missing.

    Examples
    --------
    >>> x = np.array([[1.0, np.nan], [3.0, np.nan]])
    >>> valid = ~np.isnan(x)
    >>> finish(axis_partial(x, (0,), "mean", valid), "mean", 0, x.dtype).tolist()
    [2.0, nan]
    """
    n = part.count
    with np.errstate(invalid="ignore", divide="ignore"):
        if op == "count":
            return n
        if op in ("sum", "mean"):
            assert part.total is not None
            out = part.total if op == "sum" else part.total / np.maximum(n, 1)
        elif op == "std":
            assert part.m2 is not None
            dof = n - ddof
            out = np.where(dof > 0, np.sqrt(part.m2 / np.maximum(dof, 1)), np.nan)
        else:
            assert part.extreme is not None
            out = part.extreme
    out = np.asarray(out, dtype=result_dtype(op, dtype))
    if missing is None and op == "sum":
        missing = 0.0
    if missing is None and dtype.kind not in "f" and op in ("min", "max"):
        return out  # nothing uncounted: integers have no NaN to skip and no fill value here
    empty = n == 0
    if empty.any():
        out = out.copy()
        out[empty] = np.nan if missing is None else missing
    return out
