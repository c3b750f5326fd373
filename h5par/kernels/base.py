"""The kernel interface, the registry of kernel names and parameter checking (pure numpy)."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Hashable, Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np

from h5par.core.decomposition import Index
from h5par.core.values import representable, unrepresentable
from h5par.errors import H5ParError, UsageError

__all__ = [
    "KERNELS",
    "Kernel",
    "KernelError",
    "Scratch",
    "as_number",
    "axes_of",
    "check_axis_param",
    "check_value",
    "converted",
    "first_position",
    "make_kernel",
    "register",
    "representable",
    "require_kinds",
    "ufunc_out",
    "unrepresentable",
]

K = TypeVar("K", bound="type[Kernel]")

#: Registered kernels by name (filled by :func:`register`).
KERNELS: dict[str, type[Kernel]] = {}

_KIND_NAMES = {
    "b": "bool",
    "i": "signed integer",
    "u": "unsigned integer",
    "f": "floating point",
    "c": "complex",
}


class KernelError(H5ParError):
    """A kernel met data it cannot process (e.g. an out-of-range value); exit status 1."""


class Scratch:
    """Arrays reused from one block to the next, so that steps do not zero fresh memory.

    The runner makes one per sweep over a dataset; a chain hands each kernel its own part
    (:meth:`at`). :meth:`take` returns the array kept under a name, reallocated only when
    a block needs more elements or another dtype (a smaller last block gets a view of the
    first elements). An array taken is valid until the same name is taken again: whoever
    uses it must be done with it by the next block.

    Examples
    --------
    >>> scratch = Scratch()
    >>> a = scratch.take((2, 3), np.dtype("f8"))
    >>> b = scratch.take((4,), np.dtype("f8"))
    >>> b.shape, np.shares_memory(a, b), np.shares_memory(a, scratch.at(1).take((4,), "f8"))
    ((4,), True, False)
    """

    def __init__(self) -> None:
        self._arrays: dict[Hashable, np.ndarray] = {}
        self._prefix: tuple[Hashable, ...] = ()

    def at(self, *key: Hashable) -> Scratch:
        """The part of this scratch named ``key`` (e.g. a kernel's position in its chain)."""
        part = Scratch()
        part._arrays, part._prefix = self._arrays, (*self._prefix, *key)
        return part

    def take(self, shape: tuple[int, ...], dtype: Any, name: str = "out") -> np.ndarray:
        """A C-contiguous array of ``shape`` and ``dtype``, contents undefined."""
        dtype, n = np.dtype(dtype), math.prod(shape)
        key = (*self._prefix, name)
        kept = self._arrays.get(key)
        if kept is None or kept.dtype != dtype or kept.size < n:
            kept = self._arrays[key] = np.empty(n, dtype)
        return kept[:n].reshape(shape)


def converted(x: np.ndarray, dtype: Any, scratch: Scratch | None = None) -> np.ndarray:
    """``x.astype(dtype)`` (always a copy), written into ``scratch`` when given.

    Both convert with numpy's own casts (``casting="unsafe"``): the results are bitwise equal.
    """
    if scratch is None:
        return x.astype(dtype)
    out = scratch.take(x.shape, dtype)
    np.copyto(out, x, casting="unsafe")
    return out


def ufunc_out(
    scratch: Scratch | None, shape: tuple[int, ...], dtype: Any, name: str = "out"
) -> np.ndarray | None:
    """A ufunc's ``out=``: an array of ``scratch``, or None (numpy allocates a fresh one)."""
    return None if scratch is None else scratch.take(shape, dtype, name)


@dataclasses.dataclass(frozen=True)
class Kernel:
    """A block → block transformation, pure numpy, independent of where the block lies.

    Subclasses are frozen dataclasses whose fields are the kernel's parameters (the keys of
    a ``[[kernels]]`` table). ``__call__`` receives a block and its index in the dataset,
    and may write its result into an array of ``scratch`` instead of fresh memory (the
    result must be bitwise the same). It must neither change ``x`` nor keep a reference to
    it or to its result: the runner reuses both arrays for the next block.
    """

    name: ClassVar[str] = ""
    #: dtype kinds the kernel accepts (numpy ``dtype.kind`` letters); empty: any dtype.
    kinds: ClassVar[str] = ""
    #: True when element i of the output depends only on element i of the input.
    elementwise: ClassVar[bool] = True

    def __call__(self, x: np.ndarray, index: Index, scratch: Scratch | None = None) -> np.ndarray:
        """Transform one block ``x`` found at ``index`` in the (input) dataset."""
        raise NotImplementedError

    def result_dtype(self, dtype: np.dtype[Any]) -> np.dtype[Any]:
        """Dtype of the output for an input of ``dtype``."""
        return dtype

    def halo_widths(self, ndim: int) -> tuple[tuple[int, int], ...]:
        """Neighbours each element needs, before and after, along each axis (none by default).

        A kernel with a halo receives its block extended by it (see :mod:`h5par.core.halo`) and
        returns a result of the extended block's shape; the runner keeps the block's part.
        """
        return ((0, 0),) * ndim

    @property
    def has_halo(self) -> bool:
        """True when the kernel needs neighbours (see :meth:`halo_widths`)."""
        return False

    @property
    def halo_wraps(self) -> bool:
        """True when the halo wraps around the dataset's ends (else it is cut there)."""
        return False

    def result_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the output dataset for an input dataset of ``shape``."""
        return shape

    def check(self, dtype: np.dtype[Any], shape: tuple[int, ...]) -> None:
        """Raise :class:`UsageError` if the kernel cannot process such a dataset."""
        if self.kinds:
            require_kinds(self.name, dtype, self.kinds)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Kernel:
        """Build the kernel from a parameter table, rejecting unknown or missing keys."""
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(params) - set(fields))
        if unknown:
            valid = ", ".join(fields) or "none"
            raise UsageError(
                f"kernel {cls.name!r}: unknown parameter {unknown[0]!r} (valid: {valid})"
            )
        missing = [
            n
            for n, f in fields.items()
            if n not in params
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise UsageError(
                f"kernel {cls.name!r}: missing required parameter {missing[0]!r} "
                f"(parameters: {', '.join(fields)})"
            )
        return cls(**params)


def register(cls: K) -> K:
    """Class decorator adding a kernel to :data:`KERNELS` under its ``name``."""
    KERNELS[cls.name] = cls
    return cls


def make_kernel(spec: Mapping[str, Any]) -> Kernel:
    """Build a kernel from ``{"name": ..., **parameters}``.

    Examples
    --------
    >>> make_kernel({"name": "clip", "min": 0.0})
    Clip(min=0.0, max=None)
    >>> make_kernel({"name": "blur"})
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: unknown kernel 'blur' (valid: abs, astype, broadcast, clip, fill, gradient, moving_mean, python, reduce, reshape, scale, smooth, where)
    """
    params = dict(spec)
    name = params.pop("name", None)
    if name not in KERNELS:
        valid = ", ".join(sorted(KERNELS))
        raise UsageError(f"unknown kernel {name!r} (valid: {valid})")
    return KERNELS[name].from_params(params)


def require_kinds(kernel: str, dtype: np.dtype[Any], kinds: str) -> None:
    """Raise :class:`UsageError` unless ``dtype.kind`` is one of ``kinds``."""
    if dtype.kind not in kinds or dtype.fields is not None:
        valid = ", ".join(_KIND_NAMES[k] for k in kinds)
        raise UsageError(f"kernel {kernel!r} cannot process dtype {dtype} (valid: {valid})")


def as_number(kernel: str, key: str, value: Any, optional: bool = False) -> Any:
    """Check that a parameter is a real number (not bool, not NaN unless a float)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UsageError(f"kernel {kernel!r}: {key} = {value!r} is not a number")
    return value


def axes_of(kernel: str, axis: Any, ndim: int) -> tuple[int, ...]:
    """``axis`` (None: every axis, an int or a list) as non-negative axes of an ``ndim``-d array.

    >>> axes_of("smooth", [-1, 0], 3)
    (2, 0)
    >>> axes_of("smooth", 3, 2)
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: kernel 'smooth': axis = 3 does not exist in a 2-d dataset (valid: -2..1)
    """
    items = list(range(ndim)) if axis is None else axis if isinstance(axis, list) else [axis]
    out = []
    for a in items:
        if isinstance(a, bool) or not isinstance(a, int) or not -ndim <= a < ndim:
            raise UsageError(
                f"kernel {kernel!r}: axis = {a!r} does not exist in a {ndim}-d dataset "
                f"(valid: {-ndim}..{ndim - 1})"
            )
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise UsageError(f"kernel {kernel!r}: axis = {axis!r} names an axis twice")
    return tuple(out)


def check_axis_param(kernel: str, axis: Any) -> None:
    """Raise :class:`UsageError` unless ``axis`` is None, an integer or a list."""
    ok = axis is None or isinstance(axis, int | list)
    if not ok or isinstance(axis, bool):
        raise UsageError(f"kernel {kernel!r}: axis = {axis!r} (valid: an integer or a list)")


def check_value(kernel: str, key: str, value: Any, dtype: np.dtype[Any], hint: str = "") -> None:
    """Raise :class:`UsageError` unless the constant ``value`` can be stored in ``dtype``.

    >>> check_value("where", "value", float("nan"), np.dtype("int32"))
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: kernel 'where': value = nan cannot be represented in int32 (valid: whole numbers -2147483648..2147483647)
    """
    valid = representable(value, dtype)
    if valid is not None:
        raise UsageError(
            f"kernel {kernel!r}: {key} = {value!r} cannot be represented in {dtype} "
            f"(valid: {valid}{hint})"
        )


def first_position(bad: np.ndarray, index: Index) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The first True element of ``bad`` (a block's mask): in the block and in the dataset."""
    where = np.unravel_index(int(np.argmax(bad)), bad.shape) if bad.ndim else ()
    offsets = [s.start for s in index] if index else [0] * bad.ndim
    local = tuple(int(i) for i in where)
    return local, tuple(i + o for i, o in zip(local, offsets, strict=True))
