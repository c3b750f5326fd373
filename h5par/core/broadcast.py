"""numpy's broadcasting rules in box arithmetic (pure): which part of each input a unit needs.

A derived dataset's units are boxes of its result. Each input is read only where
broadcasting maps the box: its trailing axes, and the single element of an axis of
length 1 (a ``(nz, 1, 1)`` profile beside a ``(nz, ny, nx)`` field).
"""

from __future__ import annotations

from collections.abc import Mapping

from h5par.core.decomposition import Index
from h5par.errors import UsageError

__all__ = ["broadcast_shape", "source_box"]


def broadcast_shape(shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, ...]:
    """The shape numpy broadcasts the named ``shapes`` to; a mismatch names both inputs.

    Examples
    --------
    >>> broadcast_shape({"t": (4, 3, 2), "p": (4, 1, 1), "c": ()})
    (4, 3, 2)
    >>> broadcast_shape({"u": (4, 3), "v": (3, 4)})
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: inputs u (shape (4, 3)) and v (shape (3, 4)) do not broadcast \
together (valid: equal lengths, or 1, on each axis counted from the last)
    """
    result: tuple[int, ...] = ()
    first: dict[int, str] = {}  # axis from the end -> the first input giving it a length > 1
    for name, shape in shapes.items():
        ndim = max(len(result), len(shape))
        padded = (1,) * (ndim - len(shape)) + tuple(shape)
        current = (1,) * (ndim - len(result)) + result
        merged = []
        for k, (a, b) in enumerate(zip(current, padded, strict=True)):
            back = ndim - k
            if a != b and 1 not in (a, b):
                other = first[back]
                raise UsageError(
                    f"inputs {other} (shape {shapes[other]}) and {name} (shape {tuple(shape)}) "
                    "do not broadcast together (valid: equal lengths, or 1, on each axis "
                    "counted from the last)"
                )
            if b != 1 and back not in first:
                first[back] = name
            merged.append(b if a == 1 else a)
        result = tuple(merged)
    return result


def source_box(box: Index, shape: tuple[int, ...]) -> Index:
    """The box of an input of ``shape`` that result box ``box`` reads (numpy broadcasting).

    >>> source_box((slice(2, 4), slice(0, 3), slice(1, 2)), (4, 1, 1))
    (slice(2, 4, None), slice(0, 1, None), slice(0, 1, None))
    >>> source_box((slice(2, 4), slice(0, 3)), (3,))
    (slice(0, 3, None),)
    """
    trailing = box[len(box) - len(shape) :] if shape else ()
    return tuple(slice(0, 1) if n == 1 else s for s, n in zip(trailing, shape, strict=True))
