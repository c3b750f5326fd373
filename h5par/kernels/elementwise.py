"""Elementwise kernels: clip, scale, abs, fill, where (pure numpy, bitwise equal to numpy)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from h5par.decomposition import Index
from h5par.errors import UsageError

from .base import Kernel, Scratch, as_number, converted, register, ufunc_out
from .expr import Expression, compile_expression

__all__ = ["Abs", "Clip", "Fill", "Scale", "Where"]


@register
@dataclasses.dataclass(frozen=True)
class Clip(Kernel):
    """Limit values to ``[min, max]`` (either bound optional), as ``numpy.clip``; keeps the dtype.

    Examples
    --------
    >>> Clip(min=0)(np.array([-1.5, 2.0]), ()).tolist()
    [0.0, 2.0]
    """

    name: ClassVar[str] = "clip"
    kinds: ClassVar[str] = "iuf"
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        as_number(self.name, "min", self.min, optional=True)
        as_number(self.name, "max", self.max, optional=True)
        if self.min is None and self.max is None:
            raise UsageError("kernel 'clip': give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise UsageError(f"kernel 'clip': min = {self.min} is greater than max = {self.max}")

    def check(self, dtype: np.dtype[Any], shape: tuple[int, ...]) -> None:
        """Integer data keeps its dtype: bounds must be whole numbers within its range."""
        super().check(dtype, shape)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            for key, bound in (("min", self.min), ("max", self.max)):
                if bound is not None and (bound != int(bound) or not info.min <= bound <= info.max):
                    raise UsageError(
                        f"kernel 'clip': {key} = {bound} is not a whole number in the range of "
                        f"{dtype} (valid: {info.min}..{info.max})"
                    )

    def __call__(self, x: np.ndarray, index: Index, scratch: Scratch | None = None) -> np.ndarray:
        """Clip the block (the dtype is kept)."""
        low, high = self.min, self.max
        if x.dtype.kind in "iu":
            low, high = (None if b is None else int(b) for b in (low, high))
        return np.clip(x, low, high, out=ufunc_out(scratch, x.shape, x.dtype))


@register
@dataclasses.dataclass(frozen=True)
class Scale(Kernel):
    """``x * factor + offset`` with numpy's promotion rules (an int scaled by 0.5 is float64).

    A neutral step (factor 1, offset 0) that would not change the dtype is skipped, so
    ``factor = 3`` alone is bitwise ``x * 3`` (``-0.0 * 3 + 0`` would turn -0.0 into 0.0).
    """

    name: ClassVar[str] = "scale"
    kinds: ClassVar[str] = "iufc"
    factor: float = 1
    offset: float = 0

    def __post_init__(self) -> None:
        as_number(self.name, "factor", self.factor)
        as_number(self.name, "offset", self.offset)

    def result_dtype(self, dtype: np.dtype[Any]) -> np.dtype[Any]:
        """Promotion of the dtype with the (weakly typed) Python numbers."""
        return self(np.zeros(1, dtype), (slice(0, 1),)).dtype

    def __call__(self, x: np.ndarray, index: Index, scratch: Scratch | None = None) -> np.ndarray:
        """Scale the block (the offset is added in place when the dtype stays)."""
        y = x
        if not (self.factor == 1 and np.result_type(y, self.factor) == y.dtype):
            dtype = np.result_type(y, self.factor)
            y = np.multiply(y, self.factor, out=ufunc_out(scratch, y.shape, dtype, "product"))
        if not (self.offset == 0 and np.result_type(y, self.offset) == y.dtype):
            dtype = np.result_type(y, self.offset)
            own = y is not x and y.dtype == dtype
            y = np.add(y, self.offset, out=y if own else ufunc_out(scratch, y.shape, dtype))
        return y


@register
@dataclasses.dataclass(frozen=True)
class Abs(Kernel):
    """Absolute value (``numpy.abs``; complex input gives the real magnitude)."""

    name: ClassVar[str] = "abs"
    kinds: ClassVar[str] = "iufc"

    def result_dtype(self, dtype: np.dtype[Any]) -> np.dtype[Any]:
        """Real dtype for complex input, else unchanged."""
        return np.abs(np.zeros(1, dtype)).dtype

    def __call__(self, x: np.ndarray, index: Index, scratch: Scratch | None = None) -> np.ndarray:
        """Absolute value of the block."""
        return np.abs(x, out=ufunc_out(scratch, x.shape, self.result_dtype(x.dtype)))


@register
@dataclasses.dataclass(frozen=True)
class Fill(Kernel):
    """Replace missing values (NaN, or elements equal to a sentinel number) by ``value``."""

    name: ClassVar[str] = "fill"
    kinds: ClassVar[str] = "iuf"
    value: float = 0
    missing: str | float = "nan"

    def __post_init__(self) -> None:
        as_number(self.name, "value", self.value)
        if self.missing != "nan":
            as_number(self.name, "missing", self.missing)

    def check(self, dtype: np.dtype[Any], shape: tuple[int, ...]) -> None:
        """Integers have no NaN; the replacement must be representable exactly."""
        super().check(dtype, shape)
        if self.missing == "nan" and dtype.kind != "f":
            raise UsageError(
                f"kernel 'fill': missing = 'nan' on {dtype} data, which cannot hold NaN "
                "(valid: a sentinel number, e.g. missing = -9999)"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            stored = np.array(self.value).astype(dtype)
        if dtype.kind in "iu" and stored != self.value:
            raise UsageError(f"kernel 'fill': value = {self.value} does not fit {dtype}")

    def __call__(self, x: np.ndarray, index: Index, scratch: Scratch | None = None) -> np.ndarray:
        """Fill the block's missing elements."""
        mask = np.isnan(x) if self.missing == "nan" else x == self.missing
        out = converted(x, x.dtype, scratch)
        out[mask] = self.value
        return out


@register
@dataclasses.dataclass(frozen=True)
class Where(Kernel):
    """Where ``condition`` holds, set ``value`` (both expressions in ``x``).

    The book's ``dset[data < 0] = -1 * data[data < 0]`` is
    ``condition = "x < 0"``, ``value = "-1 * x"``; the dtype of ``x`` is kept.

    Examples
    --------
    >>> Where("x < 0", "-1 * x")(np.array([-2.0, 3.0]), ()).tolist()
    [2.0, 3.0]
    """

    name: ClassVar[str] = "where"
    kinds: ClassVar[str] = "biuf"
    condition: str
    value: str | float
    _condition: Expression = dataclasses.field(init=False, repr=False, compare=False)
    _value: Expression = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_condition", compile_expression(self.condition))
        object.__setattr__(self, "_value", compile_expression(str(self.value)))

    def check(self, dtype: np.dtype[Any], shape: tuple[int, ...]) -> None:
        """The condition must give booleans on this dtype."""
        super().check(dtype, shape)
        if np.asarray(self._condition(np.zeros(1, dtype))).dtype != np.bool_:
            raise UsageError(
                f"kernel 'where': condition {self.condition!r} is not a comparison "
                "(valid: e.g. 'x < 0', '(x > 1) & ~isnan(x)')"
            )

    def __call__(self, x: np.ndarray, index: Index, scratch: Scratch | None = None) -> np.ndarray:
        """Apply the masked assignment to the block."""
        mask = np.broadcast_to(self._condition(x), x.shape)
        out = converted(x, x.dtype, scratch)
        out[mask] = np.broadcast_to(self._value(x), x.shape)[mask]
        return out
