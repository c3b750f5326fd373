"""Neighbourhood kernels: ``smooth``, ``moving_mean``, ``gradient`` (pure numpy/scipy).

Each element's result depends on its neighbours up to a *halo* (:meth:`Kernel.halo_widths`). The
runner hands these kernels a block extended by that halo (:mod:`h5par.core.halo`) — cut at the
dataset's edges, or wrapped around for ``mode = "wrap"`` — and keeps the block's own part
of the result. Because every neighbour of a kept element is real data and the edge padding
happens where the dataset ends, results equal scipy.ndimage's ``correlate1d`` /
``gaussian_filter1d`` and ``numpy.gradient`` on the whole array, bit for bit.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

import numpy as np

from h5par.core.decomposition import Index
from h5par.errors import UsageError

from .base import (
    Kernel,
    Scratch,
    as_number,
    axes_of,
    check_axis_param,
    check_value,
    register,
    ufunc_out,
)

__all__ = ["MODES", "Gradient", "MovingMean", "Smooth"]

#: Boundary modes (scipy.ndimage's names and meanings).
MODES = ("reflect", "nearest", "constant", "wrap")


def _ndimage() -> Any:
    """scipy.ndimage, imported on first use (it costs a third of a second at startup)."""
    from scipy import ndimage

    return ndimage


def _positive_int(kernel: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"kernel {kernel!r}: {key} = {value!r} (valid: an integer >= 1)")
    return value


@dataclasses.dataclass(frozen=True)
class _Filter(Kernel):
    """Separable correlation along axes with scipy.ndimage's boundary modes."""

    kinds: ClassVar[str] = "iuf"
    elementwise: ClassVar[bool] = False
    mode: str = "reflect"
    cval: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(
                f"kernel {self.name!r}: mode = {self.mode!r} (valid: {', '.join(MODES)})"
            )
        as_number(self.name, "cval", self.cval)

    def filter_axes(self, ndim: int) -> tuple[int, ...]:
        """The axes filtered, in order."""
        raise NotImplementedError

    def radius(self) -> tuple[int, int]:
        """Neighbours needed before and after each element along a filtered axis."""
        raise NotImplementedError

    def correlate(self, x: np.ndarray, axis: int, out: np.ndarray | None) -> np.ndarray:
        """The 1-d filter along ``axis`` of the whole (extended) block, into ``out`` if given."""
        raise NotImplementedError

    def check(self, dtype: np.dtype[Any], shape: tuple[int, ...]) -> None:
        """The axes must exist; a ``cval`` used must be a value of the result's dtype."""
        super().check(dtype, shape)
        self.filter_axes(len(shape))
        if self.mode == "constant":
            check_value(self.name, "cval", self.cval, self.result_dtype(dtype))

    @property
    def has_halo(self) -> bool:
        """Filters need neighbours."""
        return True

    @property
    def halo_wraps(self) -> bool:
        """True for ``mode = "wrap"``: halos wrap around the dataset's ends."""
        return self.mode == "wrap"

    def halo_widths(self, ndim: int) -> tuple[tuple[int, int], ...]:
        """The radius along the filtered axes, nothing along the others."""
        axes = self.filter_axes(ndim)
        return tuple(self.radius() if a in axes else (0, 0) for a in range(ndim))

    def result_dtype(self, dtype: np.dtype[Any]) -> np.dtype[Any]:
        """Floats keep their dtype (as scipy); integers are smoothed as float64."""
        return dtype if dtype.kind == "f" else np.dtype(np.float64)

    def __call__(self, x: np.ndarray, index: Index, scratch: Scratch | None = None) -> np.ndarray:
        """Filter the extended block along each axis in turn.

        Results go into two arrays of ``scratch`` used in turn (new arrays without one).
        """
        dtype = self.result_dtype(x.dtype)
        x = x.astype(dtype, copy=False)  # a copy for integers only
        for turn, axis in enumerate(self.filter_axes(x.ndim)):
            x = self.correlate(x, axis, ufunc_out(scratch, x.shape, dtype, "ab"[turn % 2]))
        return x


@register
@dataclasses.dataclass(frozen=True)
class Smooth(_Filter):
    """Box or gaussian smoothing along ``axis`` (default: every axis, one after the other).

    ``method = "box"`` correlates with ``size`` weights of ``1/size``
    (``scipy.ndimage.correlate1d``); ``"gaussian"`` is ``scipy.ndimage.gaussian_filter1d``
    with ``sigma`` and ``truncate``. ``mode`` and ``cval`` as in scipy.ndimage.

    Examples
    --------
    >>> Smooth(size=3)(np.array([0.0, 3.0, 0.0]), (slice(0, 3),)).tolist()
    [1.0, 1.0, 1.0]
    """

    name: ClassVar[str] = "smooth"
    method: str = "box"
    size: int | None = None
    sigma: float | None = None
    truncate: float = 4.0
    axis: int | list[int] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_axis_param(self.name, self.axis)
        if self.method == "box":
            if self.sigma is not None or self.size is None:
                raise UsageError("kernel 'smooth': method = 'box' takes size (not sigma)")
            _positive_int(self.name, "size", self.size)
        elif self.method == "gaussian":
            if self.size is not None or self.sigma is None:
                raise UsageError("kernel 'smooth': method = 'gaussian' takes sigma (not size)")
            if as_number(self.name, "sigma", self.sigma) <= 0:
                raise UsageError(f"kernel 'smooth': sigma = {self.sigma!r} (valid: > 0)")
            if as_number(self.name, "truncate", self.truncate) <= 0:
                raise UsageError(f"kernel 'smooth': truncate = {self.truncate!r} (valid: > 0)")
        else:
            raise UsageError(f"kernel 'smooth': method = {self.method!r} (valid: box, gaussian)")

    def filter_axes(self, ndim: int) -> tuple[int, ...]:
        """``axis`` resolved (every axis by default)."""
        return axes_of(self.name, self.axis, ndim)

    def radius(self) -> tuple[int, int]:
        """The footprint, as scipy: ``size // 2`` before; ``int(truncate * sigma + 0.5)``."""
        if self.method == "box":
            assert self.size is not None
            return self.size // 2, self.size - 1 - self.size // 2
        assert self.sigma is not None
        r = int(self.truncate * float(self.sigma) + 0.5)
        return r, r

    def correlate(self, x: np.ndarray, axis: int, out: np.ndarray | None) -> np.ndarray:
        """One axis of the smoothing, into ``out`` if given."""
        if self.method == "box":
            assert self.size is not None
            weights = np.full(self.size, 1.0 / self.size)
            return _ndimage().correlate1d(x, weights, axis, out, mode=self.mode, cval=self.cval)
        return _ndimage().gaussian_filter1d(
            x, self.sigma, axis, output=out, mode=self.mode, cval=self.cval, truncate=self.truncate
        )


@register
@dataclasses.dataclass(frozen=True)
class MovingMean(_Filter):
    """Centred moving average of ``window`` elements along one ``axis``.

    ``scipy.ndimage.correlate1d`` with ``window`` weights of ``1/window``; ``mode`` says
    what lies beyond the ends.

    Examples
    --------
    >>> MovingMean(window=2)(np.array([1.0, 3.0, 5.0]), (slice(0, 3),)).tolist()
    [1.0, 2.0, 4.0]
    """

    name: ClassVar[str] = "moving_mean"
    window: int = 3
    axis: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive_int(self.name, "window", self.window)
        if isinstance(self.axis, bool) or not isinstance(self.axis, int):
            raise UsageError(f"kernel 'moving_mean': axis = {self.axis!r} (valid: an integer)")

    def filter_axes(self, ndim: int) -> tuple[int, ...]:
        """The one axis."""
        return axes_of(self.name, self.axis, ndim)

    def radius(self) -> tuple[int, int]:
        """``window // 2`` before, the rest after (scipy's centring)."""
        return self.window // 2, self.window - 1 - self.window // 2

    def correlate(self, x: np.ndarray, axis: int, out: np.ndarray | None) -> np.ndarray:
        """The moving average along ``axis``, into ``out`` if given."""
        weights = np.full(self.window, 1.0 / self.window)
        return _ndimage().correlate1d(x, weights, axis, out, mode=self.mode, cval=self.cval)


@register
@dataclasses.dataclass(frozen=True)
class Gradient(Kernel):
    """``numpy.gradient(x, spacing, axis=axis, edge_order=edge_order)``.

    Central differences inside, one-sided differences of order ``edge_order`` (1 or 2) at
    the dataset's ends. Floats keep their dtype, integers give float64 (as numpy).

    Examples
    --------
    >>> Gradient(axis=0)(np.array([1.0, 2.0, 4.0, 8.0]), (slice(0, 4),)).tolist()
    [1.0, 1.5, 3.0, 4.0]
    """

    name: ClassVar[str] = "gradient"
    kinds: ClassVar[str] = "iuf"
    elementwise: ClassVar[bool] = False
    axis: int
    edge_order: Literal[1, 2] = 1
    spacing: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.axis, bool) or not isinstance(self.axis, int):
            raise UsageError(f"kernel 'gradient': axis = {self.axis!r} (valid: an integer)")
        if self.edge_order not in (1, 2) or isinstance(self.edge_order, bool):
            raise UsageError(f"kernel 'gradient': edge_order = {self.edge_order!r} (valid: 1, 2)")
        if as_number(self.name, "spacing", self.spacing) == 0:
            raise UsageError(f"kernel 'gradient': spacing = {self.spacing!r} (valid: non-zero)")

    def check(self, dtype: np.dtype[Any], shape: tuple[int, ...]) -> None:
        """The axis must exist and hold at least ``edge_order + 1`` elements."""
        super().check(dtype, shape)
        (axis,) = axes_of(self.name, self.axis, len(shape))
        if shape[axis] < self.edge_order + 1:
            raise UsageError(
                f"kernel 'gradient': axis {self.axis} has {shape[axis]} elements, too few for "
                f"edge_order = {self.edge_order} (valid: at least {self.edge_order + 1})"
            )

    @property
    def has_halo(self) -> bool:
        """Differences need neighbours."""
        return True

    def halo_widths(self, ndim: int) -> tuple[tuple[int, int], ...]:
        """``edge_order`` neighbours on each side along the axis (the one-sided stencils)."""
        (axis,) = axes_of(self.name, self.axis, ndim)
        k = self.edge_order
        return tuple((k, k) if a == axis else (0, 0) for a in range(ndim))

    def result_dtype(self, dtype: np.dtype[Any]) -> np.dtype[Any]:
        """Floats keep their dtype, integers give float64."""
        return dtype if dtype.kind == "f" else np.dtype(np.float64)

    def __call__(self, x: np.ndarray, index: Index, scratch: Scratch | None = None) -> np.ndarray:
        """numpy.gradient of the extended block along the axis (a new array)."""
        (axis,) = axes_of(self.name, self.axis, x.ndim)
        gradient: np.ndarray = np.gradient(x, self.spacing, axis=axis, edge_order=self.edge_order)
        return gradient
