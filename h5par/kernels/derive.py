"""A derived dataset's formula on blocks: numpy's result, missing values propagated (pure).

A block of the result is the formula applied to the blocks of its inputs that numpy's
broadcasting maps to it (:func:`h5par.core.broadcast.source_box`); numpy's elementwise
operations make it equal, bit for bit, to the same formula on the whole arrays. An element
that is missing (its ``_FillValue``) in any input is the result's fill value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from h5par.errors import UsageError

from .base import KernelError
from .expr import Formula, compile_formula, names_in
from .user import function_name

__all__ = ["Derivation"]


@dataclasses.dataclass(frozen=True)
class Derivation:
    """How a derived dataset is computed from its inputs ``names``.

    Either ``expression`` (the formula language, validated here) or ``function``, a Python
    callable that receives the inputs' blocks as keyword arguments (from a job file,
    ``"package.module:function"``). Elementwise and pure, like a ``python`` kernel.

    Examples
    --------
    >>> d = Derivation("sqrt(u**2 + v**2)", ("u", "v"))
    >>> d.result_dtype({"u": (np.dtype("f4"), 1), "v": (np.dtype("f4"), 1)})
    dtype('float32')
    >>> u, v = np.array([3.0, -1.0, 0.0]), np.array([[4.0, 0.0, -9.0]])
    >>> d.evaluate({"u": u, "v": v}, (1, 3), fills={"v": -9.0}, fill=-1.0).tolist()
    [[5.0, 1.0, -1.0]]
    >>> def speed(u, v):
    ...     return np.hypot(u, v)
    >>> Derivation(None, ("u", "v"), function=speed).evaluate({"u": u, "v": v}, (1, 3)).tolist()
    [[5.0, 1.0, 9.0]]
    >>> Derivation("u + w", ("u", "v"))
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: expression 'u + w': unknown name 'w' (valid: numbers, u, v, nan, inf, pi, + - * / **, < <= > >= == !=, &, |, ~, ( ), sqrt exp log log10 sin cos tan arcsin arccos arctan arctan2 abs minimum maximum where isnan isfinite floor ceil)
    """

    expression: str | None
    names: tuple[str, ...]
    function: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        if (self.expression is None) == (self.function is None):
            raise UsageError("give either expression or function (valid: one of them)")
        if self.expression is None:
            return
        self.formula  # noqa: B018 (compiles, raising a UsageError for a bad expression)
        unused = [n for n in self.names if n not in names_in(self.expression)]
        if unused:
            raise UsageError(
                f"input {unused[0]} is not used by the expression {self.expression!r} "
                "(valid: bind only the names it uses)"
            )

    @property
    def text(self) -> str:
        """The expression, or the function's name."""
        return self.expression if self.expression is not None else function_name(self.function)

    @property
    def formula(self) -> Formula:
        """The compiled expression or the function (compiled anew: a closure does not pickle)."""
        if self.function is not None:
            function = self.function
            return lambda env: function(**env)
        assert self.expression is not None
        return compile_formula(self.expression, self.names)

    def result_dtype(
        self, inputs: Mapping[str, tuple[np.dtype[Any], int]], booleans: bool = False
    ) -> np.dtype[Any]:
        """The dtype of the result on inputs of ``{name: (dtype, ndim)}``: a number, or an error.

        A function is called once on a probe: one element of each input, holding 1.
        Booleans are refused unless ``booleans`` (a ``dtype`` converts them to numbers).
        """
        probe = {name: np.ones((1,) * ndim, dtype) for name, (dtype, ndim) in inputs.items()}
        try:
            with np.errstate(all="ignore"):
                dtype = np.asarray(self.formula(probe)).dtype
        except Exception as exc:  # numpy's refusal, or the user's function failing
            raise UsageError(
                f"{self._what} fails on a probe of ones: {type(exc).__name__}: {exc}"
            ) from exc
        if dtype.kind == "b" and not booleans:
            raise UsageError(
                f"{self._what} gives booleans (valid: set dtype = 'int8' or 'uint8' to store "
                "them as numbers)"
            )
        if dtype.kind not in "biuf":
            raise UsageError(f"{self._what} gives {dtype} (valid: integers or floats)")
        return dtype

    @property
    def _what(self) -> str:
        if self.function is not None:
            return f"function {self.text}"
        return f"expression {self.expression!r}"

    def evaluate(
        self,
        blocks: Mapping[str, np.ndarray],
        shape: tuple[int, ...],
        fills: Mapping[str, Any] | None = None,
        fill: Any = None,
        dtype: np.dtype[Any] | None = None,
    ) -> np.ndarray:
        """The result block of ``shape`` from the inputs' ``blocks`` (broadcast as numpy does).

        Elements where an input equals its ``fills`` entry (NaN matches NaN) become
        ``fill``; ``dtype`` is the result's (checked: the blocks must give it).
        """
        try:
            with np.errstate(all="ignore"):
                result = np.asarray(self.formula(blocks))
        except Exception as exc:  # numpy's refusal, or the user's function failing
            raise KernelError(f"{self._what}: {type(exc).__name__}: {exc}") from exc
        if result.shape != shape and self.function is not None:  # its bug, not broadcasting
            raise KernelError(
                f"{self._what} returned shape {result.shape} for a block of shape {shape} "
                "(it must return the shape its inputs broadcast to)"
            )
        if result.shape != shape:  # a formula of fewer axes, or of constants only
            result = np.array(np.broadcast_to(result, shape))
        if dtype is not None and result.dtype != dtype:
            if self.function is not None and result.dtype.kind not in (dtype.kind, "b"):
                raise KernelError(f"{self._what} returned {result.dtype}, expected {dtype}")
            result = result.astype(dtype)  # a constant formula's Python number, say
        missing = _missing(blocks, fills or {}, shape)
        if missing is not None and fill is not None:
            if not result.flags.writeable or any(result is b for b in blocks.values()):
                result = result.copy()
            result[missing] = fill
        return result


def _missing(
    blocks: Mapping[str, np.ndarray], fills: Mapping[str, Any], shape: tuple[int, ...]
) -> np.ndarray | None:
    """Where any input holds its fill value, broadcast to ``shape`` (None: nowhere)."""
    mask = None
    for name, value in fills.items():
        block = blocks[name]
        nan = isinstance(value, float | np.floating) and np.isnan(value)
        hit = np.isnan(block) if nan else block == value
        if hit.any():
            mask = hit if mask is None else mask | hit
    return None if mask is None else np.broadcast_to(mask, shape)
