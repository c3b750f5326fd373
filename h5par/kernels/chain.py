"""A chain of kernels applied in order to each block (pure numpy)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from h5par.decomposition import Index
from h5par.errors import UsageError

from .base import Kernel, Scratch, converted, make_kernel
from .reduce import Partial, Reduce
from .structural import Broadcast, Reshape

__all__ = ["Chain", "convert_fill", "missing"]


def missing(x: np.ndarray, fill: Any) -> np.ndarray:
    """Mask of the elements equal to ``fill`` (NaN matches NaN)."""
    if isinstance(fill, float | np.floating) and np.isnan(fill):
        return np.isnan(x) if x.dtype.kind in "fc" else np.zeros(x.shape, bool)
    return np.asarray(x == fill)


def convert_fill(fill: Any, dtype: np.dtype[Any]) -> Any:
    """``fill`` as a scalar of ``dtype``; a UsageError if it does not survive the conversion.

    Examples
    --------
    >>> convert_fill(-9999.0, np.dtype("int16"))
    np.int16(-9999)
    >>> convert_fill(float("nan"), np.dtype("int16"))
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: _FillValue nan cannot be represented in int16
    """
    with np.errstate(all="ignore"):
        converted = np.asarray(fill).astype(dtype)[()]
    both_nan = dtype.kind in "fc" and np.isnan(converted) and np.isnan(fill)
    if not (both_nan or converted == fill):
        raise UsageError(f"_FillValue {fill} cannot be represented in {dtype}")
    return converted


@dataclasses.dataclass(frozen=True)
class Chain:
    """Kernels applied in order; an empty chain copies the data unchanged.

    Examples
    --------
    >>> chain = Chain.from_specs([{"name": "clip", "min": 0}, {"name": "astype", "dtype": "int16"}])
    >>> chain.check(np.dtype("f8"), (4,))
    (dtype('int16'), (4,))
    >>> chain.apply(np.array([-1.5, 2.5, 3.0, 0.0]), (slice(0, 4),))[0].tolist()
    [0, 2, 3, 0]
    """

    kernels: tuple[Kernel, ...] = ()

    def __post_init__(self) -> None:
        reshaped = False
        for position, kernel in enumerate(self.kernels, 1):
            if reshaped and isinstance(kernel, Broadcast | Reshape):
                raise UsageError(
                    f"kernel #{position} ({kernel.name}): cannot follow 'reshape' "
                    "(valid after reshape: elementwise kernels and reduce)"
                )
            reshaped = reshaped or isinstance(kernel, Reshape)

    @classmethod
    def from_specs(cls, specs: Iterable[Mapping[str, Any] | Kernel]) -> Chain:
        """Build from kernel tables (``{"name": "clip", "min": 0}``) or kernel objects."""
        kernels = []
        for position, spec in enumerate(specs, 1):
            try:
                kernels.append(spec if isinstance(spec, Kernel) else make_kernel(spec))
            except UsageError as exc:
                raise UsageError(f"kernel #{position}: {exc}") from None
        return cls(tuple(kernels))

    def check(
        self, dtype: np.dtype[Any], shape: tuple[int, ...], fill: Any = None
    ) -> tuple[np.dtype[Any], tuple[int, ...]]:
        """Validate against a dataset (and its ``_FillValue``); return output dtype and shape."""
        for position, kernel in enumerate(self.kernels, 1):
            try:
                kernel.check(dtype, shape)
                dtype, shape = kernel.result_dtype(dtype), kernel.result_shape(shape)
                if fill is not None:
                    fill = convert_fill(fill, dtype)
            except UsageError as exc:
                raise UsageError(f"kernel #{position}: {exc}") from None
        return dtype, shape

    def dtype_at(self, position: int, dtype: np.dtype[Any]) -> np.dtype[Any]:
        """Dtype of the data entering kernel ``position`` (0-based)."""
        for kernel in self.kernels[:position]:
            dtype = kernel.result_dtype(dtype)
        return dtype

    @property
    def reducers(self) -> list[tuple[int, Reduce]]:
        """Positions and kernels of the reductions, in order."""
        return [(i, k) for i, k in enumerate(self.kernels) if isinstance(k, Reduce)]

    def prefix(self, position: int) -> Chain:
        """The kernels before ``position``."""
        return Chain(self.kernels[:position])

    def replace(self, position: int, kernel: Kernel) -> Chain:
        """A copy with kernel ``position`` replaced (e.g. a broadcast bound to its source)."""
        kernels = list(self.kernels)
        kernels[position] = kernel
        return Chain(tuple(kernels))

    def apply(
        self, x: np.ndarray, index: Index, fill: Any = None, scratch: Scratch | None = None
    ) -> tuple[np.ndarray, list[Partial]]:
        """Transform one block; also return the partial statistics of each reduce kernel.

        With ``scratch``, kernels write into arrays reused from block to block (each kernel
        its own, ``scratch.at(position)``): the result is valid until the next call with the
        same scratch. The built-in kernels never change ``x``.

        With a ``fill`` value (a dataset's ``_FillValue``), elements equal to it are missing:
        kernels leave them as the fill value (converted by ``astype`` like the data) and
        reductions leave them out. After a ``broadcast`` the missing elements are those the
        broadcast slice brought.

        Examples
        --------
        >>> chain = Chain.from_specs([{"name": "clip", "min": 0}, {"name": "reduce", "op": "count"}])
        >>> out, (part,) = chain.apply(np.array([-9999.0, -1.0, 2.0]), (slice(0, 3),), fill=-9999.0)
        >>> out.tolist(), part.count
        ([-9999.0, 0.0, 2.0], 2)
        """
        partials = []
        mask = None if fill is None else missing(x, fill)
        for position, kernel in enumerate(self.kernels):
            own = None if scratch is None else scratch.at(position)
            if isinstance(kernel, Reduce):
                partials.append(kernel.partial(x if mask is None else x[~mask], own))
                continue
            y = kernel(x, index, own)
            if mask is not None:
                fill = convert_fill(fill, y.dtype)
                if isinstance(kernel, Broadcast):
                    mask = missing(y, fill)
                elif mask.any():
                    y = converted(y, y.dtype, own) if np.may_share_memory(y, x) else y
                    y[mask] = fill
            x = y
        return x, partials

    def __len__(self) -> int:
        return len(self.kernels)
