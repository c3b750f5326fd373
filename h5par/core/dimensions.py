"""Dimensions of a selection's output: which dimension scales it needs, and their names (pure).

A selection that cuts an axis (``"64:192"`` of 256) leaves the axis's dimension scale (a
netCDF-4 dimension, with its coordinate variable) the wrong length. As ``ncks -d`` does, the
output gets a scale of the selected length holding the coordinate's values selected the same
way. Datasets that use one input scale and select it the same way share the new scale;
different selections get one scale each. When every dataset of the output that uses the
input's scale selects it the same way, the scale is sliced where it is and keeps its name
(what ``ncks -d y,64,191`` writes); otherwise the input's scale stays whole for the datasets
that take the axis whole, and each selected version is a new scale next to it named
``{name}_1``, ``{name}_2``... (the first names not taken in its group).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from h5par.core.units import Target

__all__ = [
    "PLACEHOLDER",
    "Dimension",
    "Use",
    "axis_map",
    "dimensions",
    "pick_index",
    "pick_length",
    "placeholder_name",
    "whole_axes",
]

#: One axis of a selection (:attr:`h5par.core.slicing.Selection.axes`): ``("slice", start,
#: step, count)`` or ``("points", (i, j, ...))``; None for an axis taken whole.
Pick = tuple[Any, ...] | None

#: How netCDF-4 marks a dimension without a coordinate variable (the ``NAME`` attribute).
PLACEHOLDER = "This is a netCDF dimension but not a netCDF variable"


@dataclasses.dataclass(frozen=True)
class Use:
    """An axis of an output dataset attached to a dimension scale of the input.

    Attributes
    ----------
    dataset : str
        The dataset's path.
    axis : int
        The axis in the output dataset.
    scale : str
        The path of the input's dimension scale.
    pick : tuple or None
        What the selection takes of the axis (None: all of it).
    """

    dataset: str
    axis: int
    scale: str
    pick: Pick = None


@dataclasses.dataclass(frozen=True)
class Dimension:
    """A dimension scale of the output made by selecting one of the input's.

    Attributes
    ----------
    scale : str
        The input's scale it selects from.
    pick : tuple
        The selection of the scale's values.
    path : str
        Where it is in the output: ``scale`` itself when sliced in place.
    users : tuple of (str, int)
        The output datasets and axes attached to it.
    """

    scale: str
    pick: tuple[Any, ...]
    path: str
    users: tuple[tuple[str, int], ...]

    @property
    def in_place(self) -> bool:
        """True when the input's scale is replaced by its selection (same path)."""
        return self.path == self.scale

    @property
    def length(self) -> int:
        """The number of elements selected."""
        return pick_length(self.pick)


def pick_length(pick: tuple[Any, ...]) -> int:
    """Elements an axis's selection takes.

    >>> pick_length(("slice", 2, 3, 4)), pick_length(("points", (0, 5)))
    (4, 2)
    """
    return int(pick[3]) if pick[0] == "slice" else len(pick[1])


def pick_index(pick: tuple[Any, ...]) -> slice | list[int]:
    """The numpy index of an axis's selection, to select a scale's values.

    >>> pick_index(("slice", 2, 3, 4)), pick_index(("points", (0, 5)))
    (slice(2, 12, 3), [0, 5])
    """
    if pick[0] == "slice":
        _, start, step, count = pick
        return slice(start, start + step * (count - 1) + 1, step)
    return list(pick[1])


def placeholder_name(length: int) -> str:
    """The ``NAME`` netCDF-4 gives a dimension of ``length`` without a coordinate variable.

    >>> placeholder_name(4)
    'This is a netCDF dimension but not a netCDF variable.         4'
    """
    return f"{PLACEHOLDER}.{length:10d}"


def axis_map(target: Target) -> dict[int, tuple[int, Pick]]:
    """``{input axis: (output axis, pick)}`` of the input's axes that the output keeps.

    A selection keeps the axes it does not index (``pick`` None when taken whole), a
    reduction those it does not remove, a reshape none.

    >>> import numpy as np
    >>> from h5par.core.slicing import parse, resolve
    >>> s = resolve(parse("0, 1:3, :"), (2, 4, 5))
    >>> t = Target("/v", s.shape, np.dtype("f4"), s.shape, np.dtype("f4"), None, {}, select=s)
    >>> axis_map(t)
    {1: (0, ('slice', 1, 1, 2)), 2: (1, None)}
    """
    ndim = len(target.shape)
    if target.axes:
        survivors = [a for a in range(ndim) if a not in target.axes]
    elif target.out_shape != target.shape:
        return {}
    else:
        survivors = list(range(ndim))
    picks: dict[int, tuple[int, Pick]] = {a: (a, None) for a in range(ndim)}
    if target.select is not None:
        select = target.select
        picks = {
            new: (old, None if whole else select.axes[old]) for new, old, whole in select.kept()
        }
    return {picks[a][0]: (out, picks[a][1]) for out, a in enumerate(survivors) if a in picks}


def whole_axes(target: Target) -> list[tuple[int, int]]:
    """``(output axis, input axis)`` of the input's axes the output keeps whole."""
    return [(out, axis) for axis, (out, pick) in axis_map(target).items() if pick is None]


def dimensions(uses: Sequence[Use], taken: Mapping[str, Collection[str]]) -> list[Dimension]:
    """The new dimension scales ``uses`` need, in the order of their first use.

    ``uses`` are every output axis attached to the scales concerned; ``taken`` maps each
    scale's group to the names of the links in it.

    >>> a, b = ("slice", 0, 1, 2), ("slice", 1, 2, 2)
    >>> [d.path for d in dimensions([Use("/T", 1, "/y", a), Use("/u", 1, "/y", a)], {"/": ["y"]})]
    ['/y']
    >>> found = dimensions([Use("/T", 1, "/y", a), Use("/u", 1, "/y", b), Use("/v", 1, "/y")],
    ...                    {"/": ["y", "y_1"]})
    >>> [(d.path, d.users) for d in found]
    [('/y_2', (('/T', 1),)), ('/y_3', (('/u', 1),))]
    """
    versions: dict[str, dict[Pick, list[tuple[str, int]]]] = {}
    for use in uses:
        versions.setdefault(use.scale, {}).setdefault(use.pick, []).append((use.dataset, use.axis))
    found: list[Dimension] = []
    for scale, picks in versions.items():
        cut = [p for p in picks if p is not None]
        if len(picks) == 1 and cut:
            found.append(Dimension(scale, cut[0], scale, tuple(picks[cut[0]])))
            continue
        group, _, name = scale.rpartition("/")
        names = _fresh(name, len(cut), taken.get(group or "/", ()))
        for pick, new in zip(cut, names, strict=True):
            assert pick is not None
            found.append(Dimension(scale, pick, f"{group}/{new}", tuple(picks[pick])))
    return found


def _fresh(name: str, count: int, taken: Collection[str]) -> list[str]:
    """``count`` names ``{name}_1``, ``{name}_2``... skipping those ``taken``.

    >>> _fresh("y", 2, ["y", "y_2"])
    ['y_1', 'y_3']
    """
    names: list[str] = []
    k = 1
    while len(names) < count:
        if f"{name}_{k}" not in taken:
            names.append(f"{name}_{k}")
        k += 1
    return names
