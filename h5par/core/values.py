"""Which numbers a dtype can hold: the rules behind fill values and kernel constants (pure)."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["representable", "unrepresentable"]


def representable(value: Any, dtype: np.dtype[Any]) -> str | None:
    """None when the number ``value`` can be stored in ``dtype``, else the valid values.

    Integers (and bool) hold whole numbers in their range, exactly; floats hold NaN, ±inf
    and finite numbers that stay finite (rounding to the nearest one is IEEE's).

    Examples
    --------
    >>> representable(float("nan"), np.dtype("int32"))
    'whole numbers -2147483648..2147483647'
    >>> representable(300, np.dtype("i1")), representable(-127, np.dtype("i1"))
    ('whole numbers -128..127', None)
    >>> representable(1e300, np.dtype("f4")), representable(0.1, np.dtype("f4"))
    ('NaN, ±inf and numbers within ±3.40282e+38', None)
    """
    if dtype.kind == "b":
        return None if _whole(value) and value in (0, 1) else "0, 1"
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        ok = _whole(value) and info.min <= int(value) <= info.max
        return None if ok else f"whole numbers {info.min}..{info.max}"
    if dtype.kind in "fc":
        with np.errstate(over="ignore", invalid="ignore"):
            stored = np.asarray(value).astype(dtype)
        if not np.isfinite(value) or np.isfinite(stored):
            return None
        return f"NaN, ±inf and numbers within ±{float(np.finfo(dtype).max):g}"
    return None


def _whole(value: Any) -> bool:
    """True for a finite whole number (an integer, or a float without a fraction)."""
    if isinstance(value, numbers.Integral):
        return True
    return bool(np.isfinite(value)) and float(value).is_integer()


def unrepresentable(values: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray | None:
    """Mask of the ``values`` that cannot be stored in ``dtype``; None when all can.

    The rules of :func:`representable`, except that fractions stored in integers truncate
    toward zero, as numpy's casts and ``astype`` do.

    Examples
    --------
    >>> unrepresentable(np.array([1.5, np.nan, 3e9]), np.dtype("int32")).tolist()
    [False, True, True]
    >>> unrepresentable(np.array([1, 2], "i8"), np.dtype("int8")) is None
    True
    """
    kind = values.dtype.kind
    if kind == "b" or (kind == dtype.kind and values.dtype.itemsize <= dtype.itemsize):
        return None
    if dtype.kind == "b":
        bad = (values != 0) & (values != 1)
    elif dtype.kind in "iu" and kind in "iu":
        info = np.iinfo(dtype)
        bad = (values < info.min) | (values > info.max)
    elif dtype.kind in "iu":
        bits = 8 * dtype.itemsize
        low, high = (
            (0.0, 2.0**bits) if dtype.kind == "u" else (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1))
        )
        truncated = np.trunc(values)
        bad = np.isnan(values) | (truncated < low) | (truncated >= high)
    elif dtype.kind in "fc" and kind in "fc":
        with np.errstate(over="ignore", invalid="ignore"):
            bad = np.isfinite(values) & ~np.isfinite(values.astype(dtype))
    else:
        return None
    return bad if bad.any() else None
