"""``python``: the user's own block → block function, imported by name or given itself."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from h5par.core.decomposition import Index
from h5par.errors import UsageError

from .base import Kernel, KernelError, Scratch, register
from .convert import parse_dtype

__all__ = ["PythonKernel", "function_name", "import_function", "resolve_function"]


def function_name(function: Any) -> str:
    """``"module:qualified.name"`` of a callable, or the text naming it.

    >>> function_name(np.negative), function_name("numpy:negative")
    ('numpy:negative', 'numpy:negative')
    """
    if isinstance(function, str):
        return function
    module = getattr(function, "__module__", None) or "?"
    return f"{module}:{getattr(function, '__qualname__', type(function).__name__)}"


def resolve_function(function: Any, what: str = "kernel 'python'") -> Callable[..., Any]:
    """The callable itself, or the one ``"package.module:function"`` names (imported)."""
    if callable(function):
        return function
    if isinstance(function, str):
        return import_function(function, what)
    raise UsageError(
        f"{what}: function = {function!r} (valid: a callable, or 'package.module:function')"
    )


def import_function(spec: str, what: str = "kernel 'python'") -> Callable[..., Any]:
    """Import ``"package.module:function"``.

    Examples
    --------
    >>> import_function("numpy:negative")(np.array([1, -2])).tolist()
    [-1, 2]
    >>> import_function("numpy.negative")
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: kernel 'python': function = 'numpy.negative' (valid: 'package.module:function')
    """
    module_name, sep, attr = str(spec).partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"{what}: function = {spec!r} (valid: 'package.module:function')")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"{what}: cannot import {module_name!r} ({exc})") from exc
    except Exception as exc:  # the module itself fails: a syntax error, a raise at import
        raise UsageError(
            f"{what}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    func: Any = module
    for part in attr.split("."):
        func = getattr(func, part, None)
        if func is None:
            raise UsageError(f"{what}: {module_name!r} has no attribute {attr!r}")
    if not callable(func):
        raise UsageError(f"{what}: {spec!r} is not callable")
    return func


def _same_values(got: np.dtype[Any], expected: np.dtype[Any]) -> bool:
    """True when ``got`` holds the values of ``expected``: the same kind and size.

    Byte order does not count (numpy's ufuncs return native results for big-endian input);
    the block is converted to the output's byte order when it is written.

    >>> _same_values(np.dtype("<f8"), np.dtype(">f8")), _same_values(np.dtype("f4"), np.dtype("f8"))
    (True, False)
    """
    same = got.kind == expected.kind and got.itemsize == expected.itemsize
    return same and got.fields is None and expected.fields is None


@register
@dataclasses.dataclass(frozen=True)
class PythonKernel(Kernel):
    """Apply ``function`` (``"package.module:function"``, or from Python the callable) to each block.

    The function takes a numpy block and returns an array of the same shape, of the input's
    dtype or of ``dtype`` when given (in either byte order: a big-endian block may give a
    native result). It must be pure: it sees one block at a time, never
    the whole dataset, and must not keep a reference to the block or to its result: the
    runner reads the next block into the same memory. A function that needs neighbours (a
    stencil) asks for ``halo``: one number for every axis or one per axis. It then receives
    the block extended by that many elements on each side (cut at the dataset's ends, or
    wrapped around them with ``periodic = true``) and h5par keeps the block's part of its
    result.
    """

    name: ClassVar[str] = "python"
    function: str | Callable[[np.ndarray], Any]
    dtype: str | None = None
    halo: int | list[int] = 0
    periodic: bool = False
    _func: Callable[[np.ndarray], Any] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_func", resolve_function(self.function))
        if self.dtype is not None:
            parse_dtype(self.dtype)
        widths = self.halo if isinstance(self.halo, list) else [self.halo]
        if not all(isinstance(w, int) and not isinstance(w, bool) and w >= 0 for w in widths):
            raise UsageError(
                f"kernel 'python': halo = {self.halo!r} (valid: an integer >= 0, or a "
                "list of them, one per axis)"
            )
        if not isinstance(self.periodic, bool):
            raise UsageError(f"kernel 'python': periodic = {self.periodic!r} (valid: true, false)")

    def check(self, dtype: np.dtype[Any], shape: tuple[int, ...]) -> None:
        """A per-axis halo must name every axis."""
        if isinstance(self.halo, list) and len(self.halo) != len(shape):
            raise UsageError(
                f"kernel 'python': halo = {self.halo} has {len(self.halo)} entries "
                f"for a {len(shape)}-d dataset"
            )

    def halo_widths(self, ndim: int) -> tuple[tuple[int, int], ...]:
        """``halo`` elements on both sides along every axis (or per axis)."""
        widths = self.halo if isinstance(self.halo, list) else [self.halo] * ndim
        return tuple((w, w) for w in widths)

    @property
    def has_halo(self) -> bool:
        """True when ``halo`` asks for neighbours."""
        return any(self.halo) if isinstance(self.halo, list) else self.halo > 0

    @property
    def halo_wraps(self) -> bool:
        """``periodic = true``: the halo wraps around the dataset's ends."""
        return self.periodic

    @property
    def label(self) -> str:
        """The function's name, ``"module:function"``."""
        return function_name(self.function)

    def result_dtype(self, dtype: np.dtype[Any]) -> np.dtype[Any]:
        """The declared dtype, else the input's."""
        return dtype if self.dtype is None else parse_dtype(self.dtype)

    def __call__(self, x: np.ndarray, index: Index, scratch: Scratch | None = None) -> np.ndarray:
        """Call the function and check what it returned."""
        try:
            out = np.asarray(self._func(x))
        except Exception as exc:  # the user's code: say whose it is (--debug shows where)
            raise KernelError(f"python kernel {self.label}: {type(exc).__name__}: {exc}") from exc
        expected = self.result_dtype(x.dtype)
        if out.shape != x.shape:
            raise KernelError(
                f"python kernel {self.label}: returned shape {out.shape} for a block of "
                f"shape {x.shape} (it must keep the shape)"
            )
        if not _same_values(out.dtype, expected):
            raise KernelError(
                f"python kernel {self.label}: returned dtype {out.dtype}, expected "
                f"{expected} (declare it with dtype = '{out.dtype}')"
            )
        return out
