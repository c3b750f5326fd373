"""Elementwise kernels: clip, scale, abs, fill, where (pure numpy, bitwise equal to numpy)."""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, ClassVar

import numpy as np

from h5par.core.decomposition import Index
from h5par.errors import UsageError

from .base import (
    Kernel,
    KernelError,
    Scratch,
    as_number,
    check_value,
    converted,
    first_position,
    register,
    representable,
    ufunc_out,
    unrepresentable,
)
from .expr import Expression, compile_expression, uses_x

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
        """The dtype is kept: bounds must be numbers it holds (whole numbers for integers).

        A NaN bound is refused on any dtype (``numpy.clip`` would make every element NaN).
        """
        super().check(dtype, shape)
        for key, bound in (("min", self.min), ("max", self.max)):
            if bound is None:
                continue
            if math.isnan(bound):
                raise UsageError(
                    f"kernel 'clip': {key} = nan is not a bound (valid: a number or ±inf on "
                    "floats, whole numbers on integers)"
                )
            check_value(self.name, key, bound, dtype)

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

    def check(self, dtype: np.dtype[Any], shape: tuple[int, ...]) -> None:
        """``factor`` and ``offset`` must be numbers of the data's dtype (numpy's NEP 50).

        An integer constant on integer data keeps the dtype, so it must fit it (numpy
        raises ``OverflowError`` otherwise); a float constant on floats must stay finite.
        """
        super().check(dtype, shape)
        stage = dtype  # the product's dtype, to which the offset is added
        for key, value in (("factor", self.factor), ("offset", self.offset)):
            integral = isinstance(value, numbers.Integral)
            if stage.kind in "fc" or (stage.kind in "iu" and integral):
                hint = f"; a float {key} such as {float(value)!r} gives float64" if integral else ""
                check_value(self.name, key, value, stage, hint)
            if not integral and stage.kind in "iu":
                stage = np.dtype(np.float64)  # a float promotes integers

    def result_dtype(self, dtype: np.dtype[Any]) -> np.dtype[Any]:
        """Promotion of the dtype with the (weakly typed) Python numbers."""
        return self(np.zeros(1, dtype), (slice(0, 1),)).dtype

    @property
    def _integer_offset(self) -> int:
        """The offset added to an integer product in its dtype (a float one: 0, in float64)."""
        offset: Any = self.offset
        return int(offset) if isinstance(offset, numbers.Integral) else 0

    def _integer_range(self, dtype: np.dtype[Any]) -> tuple[int, int] | None:
        """The inputs whose ``x * factor + offset`` fits integer ``dtype``, or None: all do.

        A float offset is added to the integer product in float64: only the product counts.
        """
        factor, offset, info = int(self.factor), self._integer_offset, np.iinfo(dtype)
        if factor == 0:
            return None
        ends = sorted(((info.min - offset), (info.max - offset)), reverse=factor < 0)
        low, high = -(-ends[0] // factor), ends[1] // factor  # ceil, floor
        if low <= info.min and high >= info.max:
            return None
        return max(low, int(info.min)), min(high, int(info.max))

    def _check_overflow(self, x: np.ndarray, index: Index) -> None:
        """Integer results must fit the dtype (numpy's integer arithmetic would wrap)."""
        factor: Any = self.factor  # a float factor gives a float product: nothing wraps
        if x.dtype.kind not in "iu" or x.size == 0 or not isinstance(factor, numbers.Integral):
            return
        valid = self._integer_range(x.dtype)
        if valid is None or (valid[0] <= x.min() and x.max() <= valid[1]):
            return
        local, position = first_position((x < valid[0]) | (x > valid[1]), index)
        value, info = int(x[local]), np.iinfo(x.dtype)
        result = value * int(factor) + self._integer_offset
        raise KernelError(
            f"scale: value {value} at index {position} gives {result}, which "
            f"does not fit {x.dtype} ({info.min}..{info.max}); convert first (astype, e.g. "
            "dtype = 'int64' or 'float64') or use a float factor"
        )

    def __call__(self, x: np.ndarray, index: Index, scratch: Scratch | None = None) -> np.ndarray:
        """Scale the block (the offset is added in place when the dtype stays)."""
        self._check_overflow(x, index)
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
        """Absolute value of the block; a signed integer's minimum has none in its dtype."""
        if x.dtype.kind == "i" and x.size:
            lowest = np.iinfo(x.dtype).min
            if x.min() == lowest:
                _, position = first_position(x == lowest, index)
                raise KernelError(
                    f"abs: value {lowest} at index {position} has no absolute value in "
                    f"{x.dtype} ({-int(lowest)} does not fit); convert first (astype, e.g. "
                    "dtype = 'int64' or 'float64')"
                )
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
        check_value(self.name, "value", self.value, dtype)
        if self.missing != "nan":  # a sentinel the dtype cannot hold would match nothing
            check_value(self.name, "missing", self.missing, dtype)

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
        """Both expressions must compute on this dtype and the condition give booleans.

        A constant value (no ``x`` in it) must be one the dtype holds.
        """
        super().check(dtype, shape)
        sample = np.zeros(1, dtype)
        condition = self._sample("condition", self.condition, self._condition, sample)
        if np.asarray(condition).dtype != np.bool_:
            raise UsageError(
                f"kernel 'where': condition {self.condition!r} is not a comparison "
                "(valid: e.g. 'x < 0', '(x > 1) & ~isnan(x)')"
            )
        value = self._sample("value", str(self.value), self._value, sample)
        if not uses_x(str(self.value)):
            check_value(self.name, "value", np.asarray(value).reshape(-1)[0].item(), dtype)

    @staticmethod
    def _sample(key: str, text: str, expression: Expression, sample: np.ndarray) -> Any:
        """``expression`` on one element of the data's dtype; numpy's refusal as a UsageError."""
        try:
            with np.errstate(all="ignore"):
                return expression(sample)
        except (TypeError, ValueError, ArithmeticError) as exc:
            why = str(exc).split(", and ")[0]  # numpy's casting-rule tail says nothing more
            raise UsageError(
                f"kernel 'where': {key} {text!r} cannot be computed on {sample.dtype} data "
                f"(numpy: {why}; valid: & | ~ on comparisons or integers, constants within "
                f"the range of {sample.dtype})"
            ) from exc

    def __call__(self, x: np.ndarray, index: Index, scratch: Scratch | None = None) -> np.ndarray:
        """Apply the masked assignment to the block; values the dtype cannot hold are errors."""
        mask = np.broadcast_to(self._condition(x), x.shape)
        out = converted(x, x.dtype, scratch)
        values = np.broadcast_to(self._value(x), x.shape)[mask]
        bad = unrepresentable(values, x.dtype)
        if bad is not None:
            first = int(np.argmax(bad))
            where = np.zeros(x.shape, bool)
            where.flat[np.flatnonzero(mask)[first]] = True
            _, position = first_position(where, index)
            value = values[first].item()
            valid = representable(value, x.dtype) or "values of that dtype"
            raise KernelError(
                f"where: value {value!r} (of {self.value!r}) at index {position} cannot be "
                f"represented in {x.dtype} (valid: {valid}); convert first (astype) or "
                "change the value"
            )
        out[mask] = values
        return out
