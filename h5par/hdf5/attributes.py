"""Writing attribute edits and the history line into an open file.

With the mpio driver these calls change metadata: every rank makes them, in the same
order, with the same values (h5py's rule for collective metadata).

Strings are written as netCDF writes text: an ASCII string as a fixed-length string
(netCDF's ``char``, what ``ncatted`` and netCDF4-python write), any other as a
variable-length UTF-8 string (netCDF's ``string``). ``history`` keeps the kind it has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from typing import Any

import h5py
import numpy as np

from h5par.core.attributes import AttributeEdits, Edit, prepend_history, typed_value
from h5par.core.globs import matches
from h5par.errors import UsageError

__all__ = [
    "apply_edits",
    "fill_attribute",
    "planned_edits",
    "read_text",
    "write_history",
    "write_metadata",
    "write_text",
]


def planned_edits(
    src: h5py.File,
    edits: AttributeEdits,
    dtypes: Mapping[str, np.dtype[Any]],
    *,
    kept: Callable[[str], bool] = lambda path: True,
    groups: Collection[str] = (),
    resuming: bool = False,
) -> list[tuple[Edit, Any]]:
    """Check ``edits`` against the input and give each its typed value (metadata only).

    An object path may be a glob (``/*/temperature``, as ``input.datasets``): the edit
    applies to every group and dataset of the output it matches. ``dtypes`` are the
    output dtypes of processed datasets (others keep the input's); ``kept(path)`` says
    whether the output keeps an object; ``groups`` are new groups of the output (above
    derived datasets). A missing object, a glob matching none, or an attribute to delete
    that an object lacks is a :class:`~h5par.errors.UsageError` naming it, except when
    ``resuming`` an in-place run (which may have deleted it already).
    """
    planned, objects = [], _Objects(src, groups)
    for edit in edits.edits():
        for path in objects.named(edit, kept):
            attrs = src[path].attrs if path in src else {}
            if edit.value is None and edit.name not in attrs and not resuming:
                names = ", ".join(sorted(attrs)) or "none"
                raise UsageError(
                    f'output.delete_attrs."{path}": no attribute {edit.name!r} to delete '
                    f"(it has: {names})"
                )
            dtype = dtypes.get(path, _dtype(src.get(path)))
            value = None if edit.value is None else typed_value(edit, dtype)
            planned.append((dataclasses.replace(edit, path=path), value))
    return planned


class _Objects:
    """The objects an edit's path names: the input's groups and datasets, and new groups."""

    def __init__(self, src: h5py.File, groups: Collection[str]) -> None:
        self.src, self.groups, self.paths = src, set(groups), list[str]()

    def named(self, edit: Edit, kept: Callable[[str], bool]) -> list[str]:
        """The path itself when it names an object, else the kept objects its glob matches."""
        key = "output.delete_attrs" if edit.value is None else "output.attrs"
        there = edit.path in self.src or edit.path in self.groups
        if there or not any(c in edit.path for c in "*?["):
            if not there:
                raise UsageError(f'{key}: object "{edit.path}" is not in the input')
            if not kept(edit.path) and edit.path not in self.groups:
                raise UsageError(
                    f'{key}: object "{edit.path}" is not in the output '
                    "(output.unselected = 'drop' leaves it out)"
                )
            return [edit.path]
        if not self.paths:
            self.src.visit(lambda name: self.paths.append(f"/{name}"))
            self.paths += sorted(self.groups - set(self.paths))
        hits = [p for p in self.paths if matches(edit.path, p) and (kept(p) or p in self.groups)]
        if not hits:
            raise UsageError(f'{key}: pattern "{edit.path}" matches no object of the output')
        return hits


def fill_attribute(dset: h5py.Dataset) -> Any:
    """The dataset's ``_FillValue`` attribute (CF/netCDF) as a scalar, or None."""
    if "_FillValue" not in dset.attrs or dset.dtype.kind not in "biuf":
        return None
    value = np.asarray(dset.attrs["_FillValue"])
    if value.size != 1 or value.dtype.kind not in "biuf":
        return None
    return value.reshape(())[()]


def _dtype(obj: Any) -> np.dtype[Any] | None:
    """A dataset's dtype; None for a group or a type numpy has no equivalent for."""
    try:
        return obj.dtype if isinstance(obj, h5py.Dataset) else None
    except TypeError:
        return None


def write_metadata(
    file: h5py.File,
    edits: list[tuple[Edit, Any]],
    provenance: Mapping[str, str],
    history: str | None,
) -> None:
    """The job's attribute edits, then h5par's provenance and ``history`` line (if any)."""
    apply_edits(file, edits)
    file.attrs.update(provenance)
    if history is not None:
        write_history(file, history)


def apply_edits(file: h5py.File, edits: list[tuple[Edit, Any]]) -> None:
    """Carry out ``(edit, typed value)`` pairs in order; deleting a missing one is no error.

    A stopped in-place run may have made its edits already: running them again gives the
    same attributes.
    """
    for edit, value in edits:
        attrs = file[edit.path].attrs
        if edit.value is None:
            if edit.name in attrs:
                del attrs[edit.name]
        elif isinstance(value, str):
            write_text(attrs, edit.name, value)
        elif isinstance(value, list):
            attrs.create(edit.name, value, dtype=h5py.string_dtype())
        else:
            attrs.create(edit.name, value)


#: Longest text written as a fixed-length string: HDF5 keeps those in the object header,
#: which holds at most 64 KiB (a variable-length string's text lies in the global heap).
FIXED_TEXT_BYTES = 32 << 10


def write_text(attrs: h5py.AttributeManager, name: str, text: str, fixed: bool = True) -> None:
    """Write ``text``: fixed-length when ``fixed``, ASCII and short (netCDF ``char``), else UTF-8.

    An empty text is a variable-length string too (HDF5 has no fixed-length string of 0).
    """
    if fixed and text and text.isascii() and len(text) <= FIXED_TEXT_BYTES:
        attrs.create(name, np.bytes_(text.encode()))
    else:
        attrs.create(name, text, dtype=h5py.string_dtype())


def read_text(attrs: h5py.AttributeManager, name: str) -> str | None:
    """The text attribute ``name``, or None; an array of texts is read as lines.

    Bytes are decoded as UTF-8; numbers become their text.
    """
    if name not in attrs:
        return None
    values = np.asarray(attrs[name], dtype=object).reshape(-1)
    return "\n".join(
        v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values
    )


def write_history(file: h5py.File, line: str) -> None:
    """Put ``line`` in front of the root's ``history``, keeping its lines and its kind."""
    old = read_text(file.attrs, "history")
    info = old is not None and h5py.check_string_dtype(file.attrs.get_id("history").dtype)
    fixed = not (info and info.length is None)  # variable-length text stays so
    write_text(file.attrs, "history", prepend_history(old, line), fixed=fixed)
