"""Selections: the book's ``dset[4:8:2]``, ``dset[0, ..., 0]``, ``dset[[1, 2, 7]]`` (pure).

A selection is parsed from numpy's index syntax (never evaluated), resolved against a
dataset's shape into one entry per axis, and maps any block of the *selected* array back to
the hyperslabs of the dataset that hold it (start, count, stride per axis), so the data
pass can read exactly what a unit of the result needs.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from h5par.core.decomposition import Index
from h5par.errors import UsageError

__all__ = ["Selection", "checked", "parse", "resolve"]

#: One requested item: a slice, an integer, Ellipsis, or a coordinate list.
Item = Any


def parse(text: str) -> tuple[Item, ...]:
    """Parse ``text`` as what goes between the brackets of ``dset[...]``.

    >>> parse("4:8:2")
    (slice(4, 8, 2),)
    >>> parse("0, ..., -1")
    (0, Ellipsis, -1)
    >>> parse("[1, 2, 7], ::10")
    ([1, 2, 7], slice(None, None, 10))
    >>> parse("()")
    ()
    >>> parse("x + 1")
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: selection 'x + 1': expected integers, slices (start:stop:step), ... or one [list] of integers per axis
    """
    try:
        tree = ast.parse(f"_[{text}]", mode="eval").body
    except SyntaxError as exc:  # its position in the text shows under --debug
        raise UsageError(
            f"selection {text!r}: not valid index syntax (e.g. '4:8:2', '0, ..., 0', '[1, 2, 7]')"
        ) from exc
    assert isinstance(tree, ast.Subscript)
    node = tree.slice
    if isinstance(node, ast.Tuple) and not node.elts and text.strip() == "()":
        return ()
    nodes = node.elts if isinstance(node, ast.Tuple) else [node]
    try:
        return tuple(_item(n) for n in nodes)
    except ValueError:
        raise UsageError(
            f"selection {text!r}: expected integers, slices (start:stop:step), ... or one "
            "[list] of integers per axis"
        ) from None  # _int's bare ValueError


def _item(node: ast.expr) -> Item:
    if isinstance(node, ast.Slice):
        return slice(*(None if p is None else _int(p) for p in (node.lower, node.upper, node.step)))
    if isinstance(node, ast.Constant) and node.value is Ellipsis:
        return Ellipsis
    if isinstance(node, ast.List):
        return [_int(e) for e in node.elts]
    return _int(node)


def _int(node: ast.expr) -> int:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_int(node.operand)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return int(node.value)
    raise ValueError


def checked(table: Mapping[str, Any], label: str) -> dict[str, str]:
    """``{dataset glob: selection}`` with every selection parsed (errors before any I/O).

    ``label`` names an entry in messages: ``label.format(pattern)``.

    >>> checked({"/x": "::2"}, "select {!r}")
    {'/x': '::2'}
    >>> checked({"/x": 3}, "input.select.{}")
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: input.select./x = 3: expected a string such as '4:8:2', '0, ..., 0' or '[1, 2, 7]'
    """
    for pattern, text in table.items():
        where = label.format(pattern)
        if not isinstance(text, str):
            raise UsageError(
                f"{where} = {text!r}: expected a string such as '4:8:2', '0, ..., 0' or '[1, 2, 7]'"
            )
        try:
            parse(text)
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from exc
    return dict(table)


@dataclasses.dataclass(frozen=True)
class Selection:
    """A selection resolved against a shape: per dataset axis a slice, an index or points.

    Attributes
    ----------
    axes : tuple
        Per dataset axis: ``("slice", start, step, count)``, ``("index", i)`` (the axis is
        dropped, as numpy does) or ``("points", (i, j, ...))`` (increasing coordinates).
    text : str
        The selection as written (for messages).
    source_shape : tuple of int
        Shape of the dataset it selects from.
    """

    axes: tuple[tuple[Any, ...], ...]
    text: str = ""
    source_shape: tuple[int, ...] = ()

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the selected array."""
        return tuple(_extent(a) for a in self.axes if a[0] != "index")

    def kept(self) -> list[tuple[int, int, bool]]:
        """``(selected axis, dataset axis, whole)`` for every axis that survives.

        >>> resolve(parse("0, :, :7"), (5, 6, 7)).kept()
        [(0, 1, True), (1, 2, True)]
        >>> resolve(parse("0, :, :6"), (5, 6, 7)).kept()
        [(0, 1, True), (1, 2, False)]
        """
        out, kept = 0, []
        for axis, a in enumerate(self.axes):
            if a[0] != "index":
                whole = a[0] == "slice" and a[1] == 0 and a[2] == 1
                whole = whole and a[3] == self.source_shape[axis]
                kept.append((out, axis, whole))
                out += 1
        return kept

    def source(self, index: Index) -> list[tuple[tuple[int, ...], ...]]:
        """The dataset hyperslabs holding block ``index`` of the selection (pure).

        Each is ``(start, count, stride)`` per dataset axis; together, in order, they hold
        the block's elements in C order.

        >>> s = resolve(parse("1:9:2, [0, 2, 3]"), (10, 5))
        >>> s.source((slice(1, 3), slice(1, 3)))
        [((3, 2), (2, 2), (2, 1))]
        >>> s.source((slice(0, 1), slice(0, 2)))
        [((1, 0), (1, 1), (2, 1)), ((1, 2), (1, 1), (2, 1))]
        """
        parts: list[list[tuple[int, int, int]]] = []
        out = iter(index)
        for a in self.axes:
            if a[0] == "index":
                parts.append([(a[1], 1, 1)])
                continue
            box = next(out)
            if a[0] == "slice":
                parts.append([(a[1] + box.start * a[2], box.stop - box.start, a[2])])
            else:
                parts.append(_runs(a[1][box.start : box.stop]))
        return [tuple(zip(*combo, strict=True)) for combo in itertools.product(*parts)]


def _runs(points: Sequence[int]) -> list[tuple[int, int, int]]:
    """Consecutive coordinates merged into (start, count, stride 1) runs."""
    runs: list[tuple[int, int, int]] = []
    for p in points:
        if runs and runs[-1][0] + runs[-1][1] == p:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1, 1)
        else:
            runs.append((p, 1, 1))
    return runs


def _extent(a: tuple[Any, ...]) -> int:
    return int(a[3]) if a[0] == "slice" else len(a[1])


def resolve(items: Sequence[Item], shape: Sequence[int], text: str = "") -> Selection:
    """Check ``items`` against ``shape`` (h5py's rules and messages) and resolve them.

    >>> resolve(parse("4:8:2"), (10,)).shape
    (2,)
    >>> resolve(parse("::-1"), (10,))
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: selection '': Step must be >= 1 (got -1)
    >>> resolve(parse("0"), ())
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: selection '': Illegal slicing argument for scalar dataspace (valid: () or ...)
    """
    where = f"selection {text!r}: "
    if not shape:
        if any(i is not Ellipsis for i in items):
            raise UsageError(
                where + "Illegal slicing argument for scalar dataspace (valid: () or ...)"
            )
        return Selection((), text)
    if sum(i is Ellipsis for i in items) > 1:
        raise UsageError(where + "an index can only have a single ellipsis ('...')")
    if sum(isinstance(i, list) for i in items) > 1:
        raise UsageError(where + "only one axis may have a coordinate list")
    concrete = [i for i in items if i is not Ellipsis]
    if len(concrete) > len(shape):
        raise UsageError(where + f"{len(concrete)} indices for a {len(shape)}-d dataset")
    fill = [slice(None)] * (len(shape) - len(concrete))
    at = next((k for k, i in enumerate(items) if i is Ellipsis), len(items))
    full = [*items[:at], *fill, *items[at + 1 :]]
    axes = tuple(_axis(where, i, n, k) for k, (i, n) in enumerate(zip(full, shape, strict=True)))
    return Selection(axes, text, tuple(shape))


def _empty(item: slice | list[int], n: int, axis: int) -> str:
    """Why a selection leaving axis ``axis`` (of length ``n``) empty is refused.

    >>> _empty(slice(64, 192), 16, 1)
    'axis 1 of length 16 would be empty: 64:192 selects no element (valid: at least one of 0..15)'
    """
    if isinstance(item, list):
        text = "[]"
    else:
        parts = ["" if v is None else str(v) for v in (item.start, item.stop, item.step)]
        text = ":".join(parts if item.step is not None else parts[:2])
    return (
        f"axis {axis} of length {n} would be empty: {text} selects no element "
        f"(valid: at least one of 0..{n - 1})"
    )


def _axis(where: str, item: Item, n: int, axis: int) -> tuple[Any, ...]:
    if isinstance(item, slice):
        if item.step is not None and item.step < 1:
            raise UsageError(where + f"Step must be >= 1 (got {item.step})")
        start, stop, step = item.indices(n)
        count = max(0, math.ceil((stop - start) / step))
        if count == 0 and n > 0:
            raise UsageError(where + _empty(item, n, axis))
        return ("slice", start, step, count)
    if isinstance(item, list):
        if not item and n > 0:
            raise UsageError(where + _empty(item, n, axis))
        points = [p + n if p < 0 else p for p in item]
        bad = [p for p, q in zip(item, points, strict=True) if not 0 <= q < n]
        if bad:
            raise UsageError(
                where
                + f"coordinate {bad[0]} is out of range for axis {axis} of length {n} (valid: {-n}..{n - 1})"
            )
        if any(b <= a for a, b in itertools.pairwise(points)):
            raise UsageError(
                where + f"coordinates {item} must be in increasing order (as h5py requires)"
            )
        return ("points", tuple(points))
    i = item + n if item < 0 else item
    if not 0 <= i < n:
        raise UsageError(
            where
            + f"index {item} is out of range for axis {axis} of length {n} (valid: {-n}..{n - 1})"
        )
    return ("index", i)
