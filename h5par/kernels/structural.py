"""Kernels that move elements: ``broadcast`` (one slice to all) and ``reshape``."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np

from h5par.core.decomposition import Index
from h5par.errors import UsageError

from .base import Kernel, Scratch, converted, register

__all__ = ["Broadcast", "Reshape"]


def _int(kernel: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"kernel {kernel!r}: {key} = {value!r} is not an integer")
    return value


@register
@dataclasses.dataclass(frozen=True)
class Broadcast(Kernel):
    """Set every slice along ``axis`` to slice ``index`` (``dset[:, :] = dset[0, :]``).

    The source slice is read once before the data pass (:meth:`source_index`) and handed to
    the kernel with :meth:`with_source`; blocks then take their part of it from memory.

    Examples
    --------
    >>> k = Broadcast(index=1).with_source(np.array([[7, 8, 9]]))
    >>> k(np.zeros((2, 2), int), (slice(4, 6), slice(1, 3))).tolist()
    [[8, 9], [8, 9]]
    """

    name: ClassVar[str] = "broadcast"
    elementwise: ClassVar[bool] = False
    index: int = 0
    axis: int = 0
    _source: np.ndarray | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        _int(self.name, "index", self.index)
        _int(self.name, "axis", self.axis)

    def check(self, dtype: np.dtype[Any], shape: tuple[int, ...]) -> None:
        """``axis`` and ``index`` must exist in the dataset."""
        if not -len(shape) <= self.axis < len(shape):
            raise UsageError(
                f"kernel 'broadcast': axis = {self.axis} does not exist in a {len(shape)}-d "
                f"dataset (valid: {-len(shape)}..{len(shape) - 1})"
            )
        n = shape[self.axis]
        if not -n <= self.index < n:
            raise UsageError(
                f"kernel 'broadcast': index = {self.index} is outside axis {self.axis} of "
                f"length {n} (valid: {-n}..{n - 1})"
            )

    def source_index(self, shape: tuple[int, ...]) -> Index:
        """Index of the source slice in the dataset (the broadcast axis kept, length 1)."""
        axis, row = self.axis % len(shape), self.index % shape[self.axis]
        return tuple(
            slice(row, row + 1) if ax == axis else slice(0, n) for ax, n in enumerate(shape)
        )

    def with_source(self, source: np.ndarray) -> Broadcast:
        """A copy of the kernel holding the (already transformed) source slice."""
        bound = dataclasses.replace(self)
        object.__setattr__(bound, "_source", source)
        return bound

    def __call__(self, x: np.ndarray, index: Index, scratch: Scratch | None = None) -> np.ndarray:
        """The block filled from the matching part of the source slice."""
        if self._source is None:
            raise RuntimeError("broadcast kernel used before its source slice was read")
        axis = self.axis % x.ndim
        part = self._source[tuple(slice(0, 1) if ax == axis else s for ax, s in enumerate(index))]
        # Expanded in memory: broadcasting inside a collective write can deadlock (h5py#1108).
        return converted(np.broadcast_to(part, x.shape), x.dtype, scratch)


@register
@dataclasses.dataclass(frozen=True)
class Reshape(Kernel):
    """Same elements in C order, new shape (one entry may be -1, as in numpy).

    The book's ``(100, 480, 640)`` → ``(100, 2, 240, 640)``. Blocks pass unchanged; the
    runner writes each block's flat range into the new shape.

    Examples
    --------
    >>> Reshape([-1, 2, 240, 640]).result_shape((100, 480, 640))
    (100, 2, 240, 640)
    """

    name: ClassVar[str] = "reshape"
    shape: list[int] | tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.shape, list | tuple) or not all(
            isinstance(n, int) and not isinstance(n, bool) and (n >= 0 or n == -1)
            for n in self.shape
        ):
            raise UsageError(
                f"kernel 'reshape': shape = {self.shape!r} (valid: a list of non-negative "
                "integers, at most one -1)"
            )
        if list(self.shape).count(-1) > 1:
            raise UsageError(f"kernel 'reshape': shape = {list(self.shape)} has more than one -1")

    def result_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The new shape with any -1 resolved."""
        total, known = math.prod(shape), math.prod(n for n in self.shape if n != -1)
        new = tuple(total // known if n == -1 and known else n for n in self.shape)
        if math.prod(new) != total or (-1 in self.shape and known == 0):
            raise UsageError(
                f"kernel 'reshape': cannot reshape {shape} ({total} elements) into "
                f"{tuple(self.shape)} (valid: a shape of {total} elements, one entry may be -1)"
            )
        return new

    def check(self, dtype: np.dtype[Any], shape: tuple[int, ...]) -> None:
        """The element count must match."""
        self.result_shape(shape)

    def __call__(self, x: np.ndarray, index: Index, scratch: Scratch | None = None) -> np.ndarray:
        """Blocks pass unchanged (C order is preserved)."""
        return x
