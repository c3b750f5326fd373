"""Attribute edits and the history line of an output (pure: plain values and numpy).

A job's ``[output.attrs]`` sets attributes and ``[output.delete_attrs]`` deletes them, as
NCO's ``ncatted -a NAME,OBJ,o`` and ``ncatted -a NAME,OBJ,d`` do. :func:`attribute_edits`
validates both tables once; :func:`typed_value` gives the value an attribute is written
with (TOML's integers as int64, floats as float64, strings as strings; ``_FillValue`` and
the ``valid_*``/``missing_value`` attributes of a dataset in its dtype, as CF asks).
Every output's root ``history`` gets one line in front (:func:`prepend_history`), the
audit trail CF and NCO keep.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

import numpy as np

from h5par.core.values import representable
from h5par.errors import UsageError

__all__ = [
    "AttributeEdits",
    "Edit",
    "attribute_edits",
    "history_line",
    "prepend_history",
    "typed_value",
]

#: Attributes stored in the dataset's own dtype (CF: "of the same type as the variable").
IN_DATA_TYPE = ("_FillValue", "missing_value", "valid_min", "valid_max", "valid_range")
#: Attributes HDF5's dimension scales and the netCDF-4 library keep for their own use.
BOOKKEEPING = (
    "CLASS",
    "NAME",
    "DIMENSION_LIST",
    "REFERENCE_LIST",
    "_Netcdf4Dimid",
    "_Netcdf4Coordinates",
    "_NCProperties",
    "_nc3_strict",
)
_VALID = "a string, an integer, a number, or a non-empty array of one of them"


@dataclasses.dataclass(frozen=True)
class Edit:
    """One attribute change: ``value`` None deletes attribute ``name`` of object ``path``."""

    path: str
    name: str
    value: Any = None


@dataclasses.dataclass(frozen=True)
class AttributeEdits:
    """Validated ``[output.attrs]`` and ``[output.delete_attrs]`` (see :func:`attribute_edits`).

    Attributes
    ----------
    values : dict
        ``{object path: {attribute name: value}}``; values are str, int, float or lists.
    deletions : dict
        ``{object path: [attribute name, ...]}``.
    """

    values: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    deletions: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def edits(self) -> list[Edit]:
        """Deletions first, then the attributes set, each in the order given."""
        gone = [Edit(path, name) for path, names in self.deletions.items() for name in names]
        return gone + [
            Edit(path, name, value)
            for path, attrs in self.values.items()
            for name, value in attrs.items()
        ]


def attribute_edits(
    values: Mapping[str, Any] | None = None, deletions: Mapping[str, Any] | None = None
) -> AttributeEdits:
    """Validate ``{path: {name: value}}`` to set and ``{path: [name, ...]}`` to delete.

    Examples
    --------
    >>> attribute_edits({"/T": {"units": "K", "scale": [1, 2.5]}}, {"/": ["title"]}).edits()
    [Edit(path='/', name='title', value=None), Edit(path='/T', name='units', value='K'), \
Edit(path='/T', name='scale', value=[1.0, 2.5])]
    >>> attribute_edits({"/T": {"flag": True}})
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: output.attrs."/T".flag = True (valid: a string, an integer, \
a number, or a non-empty array of one of them)
    """
    edits = AttributeEdits(
        {p: _attrs(p, a) for p, a in _table("output.attrs", values).items()},
        {p: _names(p, n) for p, n in _table("output.delete_attrs", deletions).items()},
    )
    for path, names in edits.deletions.items():
        both = [n for n in names if n in edits.values.get(path, {})]
        if both:
            raise UsageError(
                f'output.attrs and output.delete_attrs both name "{path}" {both[0]!r} '
                "(valid: set it or delete it)"
            )
    return edits


def _table(key: str, table: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if table is None:
        return {}
    if not isinstance(table, Mapping):
        raise UsageError(f"{key} = {table!r} (valid: a table of object paths)")
    for path in table:
        if not isinstance(path, str) or not path.startswith("/"):
            raise UsageError(f'{key}: object "{path}" (valid: a path from the root, "/" or "/a/b")')
    return table


def _attrs(path: str, attrs: Any) -> dict[str, Any]:
    where = f'output.attrs."{path}"'
    if not isinstance(attrs, Mapping):
        raise UsageError(f"{where} = {attrs!r} (valid: a table of attribute names and values)")
    return {_name(where, n): _value(f"{where}.{n}", v) for n, v in attrs.items()}


def _names(path: str, names: Any) -> list[str]:
    where = f'output.delete_attrs."{path}"'
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise UsageError(f"{where} = {names!r} (valid: a list of attribute names)")
    return [_name(where, n) for n in names]


def _name(where: str, name: str) -> str:
    if not name or "/" in name or name == ".":
        raise UsageError(f"{where}: attribute name {name!r} (valid: a name without '/')")
    if name in BOOKKEEPING or name.startswith("h5par_"):
        raise UsageError(
            f"{where}: {name!r} is kept by HDF5, netCDF or h5par itself (valid: any other name)"
        )
    return name


def _value(where: str, value: Any) -> Any:
    """A TOML value an attribute can hold: a scalar, or a flat array of one kind."""
    if _scalar(value):
        return value
    if isinstance(value, list | tuple) and value and all(_scalar(v) for v in value):
        if all(isinstance(v, str) for v in value):
            return list(value)
        if not any(isinstance(v, str) for v in value):  # integers and numbers: numbers
            return list(value) if all(isinstance(v, int) for v in value) else [*map(float, value)]
    raise UsageError(f"{where} = {value!r} (valid: {_VALID})")


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def typed_value(
    edit: Edit, dtype: np.dtype[Any] | None = None
) -> str | list[str] | np.ndarray[Any, Any]:
    """The value ``edit`` writes: strings as they are, numbers as a numpy array.

    ``dtype`` is the dtype of the dataset the attribute belongs to (None for a group):
    the attributes of :data:`IN_DATA_TYPE` take it when it is numeric, other numbers are
    int64 or float64.

    Examples
    --------
    >>> typed_value(Edit("/T", "_FillValue", -9999), np.dtype("f4"))
    array(-9999., dtype=float32)
    >>> typed_value(Edit("/T", "valid_range", [0, 300]), np.dtype("u1"))
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: output.attrs."/T".valid_range = [0, 300]: 300 does not fit \
the dataset's uint8 (valid: whole numbers 0..255)
    """
    value = edit.value
    numbers = value if isinstance(value, list) else [value]
    where = f'output.attrs."{edit.path}".{edit.name} = {value!r}'
    in_data_type = dtype is not None and edit.name in IN_DATA_TYPE and dtype.kind in "biuf"
    if isinstance(numbers[0], str):
        if in_data_type:
            raise UsageError(f"{where}: text for a {dtype} dataset (valid: numbers it can hold)")
        return value
    if in_data_type:
        assert dtype is not None
        for number in numbers:
            valid = representable(number, dtype)
            if valid is not None:
                raise UsageError(
                    f"{where}: {number!r} does not fit the dataset's {dtype} (valid: {valid})"
                )
        return np.asarray(value).astype(dtype)
    if not all(isinstance(v, int) for v in numbers):
        return np.asarray(value, dtype=np.float64)
    if not all(-(2**63) <= v < 2**63 for v in numbers):
        raise UsageError(f"{where}: beyond 64-bit integers (valid: -2**63..2**63-1, or a float)")
    return np.asarray(value, dtype=np.int64)


def history_line(command: str, when: datetime.datetime, version: str) -> str:
    """One line of the ``history`` attribute: a UTC timestamp, the command, h5par's version.

    >>> history_line("h5par run a.toml", datetime.datetime(2026, 12, 1, 20, tzinfo=datetime.UTC), "0.2")
    '2026-12-01T20:00:00Z: h5par run a.toml (h5par 0.2)'
    """
    stamp = when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    command = command.replace("\r", " ").replace("\n", " ")  # one line, whatever the names hold
    return f"{stamp}: {command} (h5par {version})"


def prepend_history(old: str | None, line: str) -> str:
    r"""``line`` in front of the ``old`` history, whose lines are kept (newest first).

    >>> prepend_history("2020-01-01: ncks a.nc b.nc", "2026-12-01T20:00:00Z: h5par run j.toml")
    '2026-12-01T20:00:00Z: h5par run j.toml\n2020-01-01: ncks a.nc b.nc'
    """
    return f"{line}\n{old}" if old else line
