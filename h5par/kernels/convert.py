"""``astype``: type conversion with IEEE semantics for floats and explicit integer overflow."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from h5par.core.decomposition import Index
from h5par.errors import UsageError

from .base import Kernel, KernelError, Scratch, converted, register, ufunc_out

__all__ = ["AsType", "parse_dtype"]

_OVERFLOW = ("error", "saturate", "wrap")
_NUMERIC = "biufc"


def parse_dtype(value: Any) -> np.dtype[Any]:
    """A numeric numpy dtype from its name (``"float32"``, ``"<i2"``, ``"uint8"``...).

    Examples
    --------
    >>> parse_dtype("float32")
    dtype('float32')
    >>> parse_dtype("U10")
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: dtype 'U10' is not numeric (valid: bool, int8..int64, uint8..uint64, float16..float64, complex64, complex128)
    """
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise UsageError(
            f"dtype {value!r} is not a numpy dtype name (valid: e.g. float32, int16, uint8)"
        ) from None  # numpy's 'not understood' adds nothing
    if dtype.kind not in _NUMERIC or dtype.fields is not None:
        raise UsageError(
            f"dtype {value!r} is not numeric (valid: bool, int8..int64, uint8..uint64, "
            "float16..float64, complex64, complex128)"
        )
    return dtype


@register
@dataclasses.dataclass(frozen=True)
class AsType(Kernel):
    """Convert to ``dtype``.

    Float to float keeps IEEE semantics (1e256 becomes inf in float32). Conversions to
    integers apply ``overflow``: ``"error"`` stops at the first value that does not fit
    (NaN and inf included), ``"saturate"`` clamps to the target's range, ``"wrap"`` keeps
    numpy's modular wrap-around (integer sources only). Fractions truncate toward zero, as
    numpy does.

    Examples
    --------
    >>> AsType("float32")(np.array([1e256, 0.1]), ()).tolist()[0]
    inf
    >>> AsType("int8", overflow="saturate")(np.array([300.7, -1e9, 5.9]), ()).tolist()
    [127, -128, 5]
    """

    name: ClassVar[str] = "astype"
    kinds: ClassVar[str] = _NUMERIC
    dtype: str
    overflow: str = "error"
    _target: np.dtype[Any] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_target", parse_dtype(self.dtype))
        if self.overflow not in _OVERFLOW:
            raise UsageError(
                f"kernel 'astype': overflow = {self.overflow!r} (valid: {', '.join(_OVERFLOW)})"
            )

    def result_dtype(self, dtype: np.dtype[Any]) -> np.dtype[Any]:
        """The target dtype."""
        return self._target

    def check(self, dtype: np.dtype[Any], shape: tuple[int, ...]) -> None:
        """Reject conversions that would silently lose information numpy does not report."""
        super().check(dtype, shape)
        if dtype.kind == "c" and self._target.kind != "c":
            raise UsageError(
                f"kernel 'astype': {dtype} → {self._target} would drop the imaginary part "
                "(valid: a complex dtype; use a python kernel for np.real/np.abs)"
            )
        if self.overflow == "wrap" and dtype.kind == "f" and self._target.kind in "iu":
            raise UsageError(
                "kernel 'astype': overflow = 'wrap' only applies to integer → integer "
                "(valid for float → integer: 'error', 'saturate')"
            )

    def __call__(self, x: np.ndarray, index: Index, scratch: Scratch | None = None) -> np.ndarray:
        """Convert the block."""
        target = self._target
        if target.kind not in "iu" or x.dtype.kind == "b" or self.overflow == "wrap":
            with np.errstate(over="ignore", invalid="ignore"):
                return converted(x, target, scratch)
        if x.dtype.kind == "f":
            return self._float_to_int(x, index, scratch)
        return self._int_to_int(x, index, scratch)

    def _float_to_int(self, x: np.ndarray, index: Index, scratch: Scratch | None) -> np.ndarray:
        truncated = np.trunc(x).astype(np.float64 if x.dtype.itemsize <= 8 else x.dtype)
        bits = 8 * self._target.itemsize
        low, high = (
            (0.0, 2.0**bits)
            if self._target.kind == "u"
            else (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1))
        )
        too_low, too_high = truncated < low, truncated >= high
        bad = np.isnan(truncated)
        if self.overflow == "error":
            bad |= too_low | too_high
        self._raise_first(x, bad, index)
        info = np.iinfo(self._target)
        with np.errstate(invalid="ignore"):
            out = converted(np.where(too_low | too_high, 0, truncated), self._target, scratch)
        out[too_low] = info.min
        out[too_high] = info.max
        return out

    def _int_to_int(self, x: np.ndarray, index: Index, scratch: Scratch | None) -> np.ndarray:
        info = np.iinfo(self._target)
        if self.overflow == "error":
            self._raise_first(x, (x < info.min) | (x > info.max), index)
            return converted(x, self._target, scratch)
        source = np.iinfo(x.dtype)
        low, high = max(info.min, source.min), min(info.max, source.max)
        clipped = np.clip(x, low, high, out=ufunc_out(scratch, x.shape, x.dtype, "clipped"))
        return converted(clipped, self._target, scratch)

    def _raise_first(self, x: np.ndarray, bad: np.ndarray, index: Index) -> None:
        if not bad.any():
            return
        where = np.unravel_index(int(np.argmax(bad)), x.shape) if x.ndim else ()
        offsets = [s.start for s in index] if index else [0] * x.ndim
        position = tuple(int(i) + o for i, o in zip(where, offsets, strict=True))
        info = np.iinfo(self._target)
        raise KernelError(
            f"astype: value {x[where].item()!r} at index {position} does not fit {self._target} "
            f"({info.min}..{info.max}); set overflow = 'saturate' (or 'wrap' for integers) "
            "to convert anyway"
        )
