"""A chain of kernels applied in order to each block (pure numpy)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from h5par.core.decomposition import Index
from h5par.errors import UsageError

from .axes import AxisPartial, axis_partial
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


def _counted(x: np.ndarray, mask: np.ndarray | None, core: Index | None) -> np.ndarray:
    """The elements of block ``x`` a global reduction counts: not missing, not in the halo.

    A halo (the neighbours a later kernel reads, ``x[core]`` is the block itself) belongs
    to the neighbouring blocks, which count it themselves.

    >>> _counted(np.arange(6.0), np.arange(6) == 2, (slice(1, 5),)).tolist()
    [1.0, 3.0, 4.0]
    """
    if core is not None:
        x, mask = x[core], None if mask is None else mask[core]
    return x if mask is None else x[~mask]


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
        reshaped = moved = neighbours = False
        for position, kernel in enumerate(self.kernels, 1):
            where = f"kernel #{position} ({kernel.name})"
            if reshaped and isinstance(kernel, Broadcast | Reshape):
                raise UsageError(
                    f"{where}: cannot follow 'reshape' "
                    "(valid after reshape: elementwise kernels and reduce)"
                )
            if kernel.has_halo and (moved or neighbours):
                raise UsageError(
                    f"{where}: needs neighbours, so it cannot follow 'reshape', 'broadcast' "
                    "or another kernel with neighbours (valid before it: elementwise kernels)"
                )
            if neighbours and isinstance(kernel, Reshape):
                raise UsageError(f"{where}: cannot follow a kernel with neighbours")
            if isinstance(kernel, Reduce) and kernel.axis is not None:
                if position != len(self.kernels):
                    raise UsageError(
                        f"{where}: a reduction along axes ends the chain (valid: make it the "
                        "last kernel)"
                    )
                if reshaped:
                    raise UsageError(f"{where}: a reduction along axes cannot follow 'reshape'")
            reshaped = reshaped or isinstance(kernel, Reshape)
            moved = moved or isinstance(kernel, Broadcast | Reshape)
            neighbours = neighbours or kernel.has_halo

    @classmethod
    def from_specs(cls, specs: Chain | Iterable[Mapping[str, Any] | Kernel]) -> Chain:
        """Build from kernel tables (``{"name": "clip", "min": 0}``) or kernel objects.

        A chain given is returned as it is (built once, passed on).
        """
        if isinstance(specs, Chain):
            return specs
        kernels = []
        for position, spec in enumerate(specs, 1):
            try:
                kernels.append(spec if isinstance(spec, Kernel) else make_kernel(spec))
            except UsageError as exc:
                raise UsageError(f"kernel #{position}: {exc}") from exc
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
                raise UsageError(f"kernel #{position}: {exc}") from exc
            except (TypeError, ValueError, ArithmeticError) as exc:  # numpy refused a parameter
                raise UsageError(
                    f"kernel #{position} ({kernel.name}): cannot process {dtype} data with "
                    f"these parameters ({type(exc).__name__}: {exc})"
                ) from exc
        return dtype, shape

    def dtype_at(self, position: int, dtype: np.dtype[Any]) -> np.dtype[Any]:
        """Dtype of the data entering kernel ``position`` (0-based)."""
        for kernel in self.kernels[:position]:
            dtype = kernel.result_dtype(dtype)
        return dtype

    @property
    def reducers(self) -> list[tuple[int, Reduce]]:
        """Positions and kernels of the global reductions (no ``axis``), in order."""
        return [
            (i, k) for i, k in enumerate(self.kernels) if isinstance(k, Reduce) and k.axis is None
        ]

    @property
    def axis_reducer(self) -> Reduce | None:
        """The closing reduction along axes, if the chain ends with one."""
        last = self.kernels[-1] if self.kernels else None
        return last if isinstance(last, Reduce) and last.axis is not None else None

    def halo(self, ndim: int) -> tuple[tuple[tuple[int, int], ...], bool] | None:
        """The halo blocks must be read with and whether it wraps around (None: no halo)."""
        kernel = next((k for k in self.kernels if k.has_halo), None)
        return None if kernel is None else (kernel.halo_widths(ndim), kernel.halo_wraps)

    def prefix(self, position: int) -> Chain:
        """The kernels before ``position``."""
        return Chain(self.kernels[:position])

    def replace(self, position: int, kernel: Kernel) -> Chain:
        """A copy with kernel ``position`` replaced (e.g. a broadcast bound to its source)."""
        kernels = list(self.kernels)
        kernels[position] = kernel
        return Chain(tuple(kernels))

    def apply(
        self,
        x: np.ndarray,
        index: Index,
        fill: Any = None,
        core: Index | None = None,
        scratch: Scratch | None = None,
    ) -> tuple[np.ndarray, list[Partial]]:
        """Transform one block; also return the partial statistics of each reduce kernel.

        With ``scratch``, kernels write into arrays reused from block to block (each kernel
        its own, ``scratch.at(position)``): the result is valid until the next call with the
        same scratch. The built-in kernels never change ``x``.

        With a ``fill`` value (a dataset's ``_FillValue``), elements equal to it are missing:
        kernels leave them as the fill value (converted by ``astype`` like the data) and
        reductions leave them out. After a ``broadcast`` the missing elements are those the
        broadcast slice brought.

        A chain with neighbours gets the block extended by its halo and the ``core`` slices
        locating the block in it (:mod:`h5par.core.halo`); the kernel with neighbours keeps only
        the core of its result. A closing reduction along axes passes the data through;
        :meth:`reduce_axes` gives its statistics.

        Examples
        --------
        >>> chain = Chain.from_specs([{"name": "clip", "min": 0}, {"name": "reduce", "op": "count"}])
        >>> out, (part,) = chain.apply(np.array([-9999.0, -1.0, 2.0]), (slice(0, 3),), fill=-9999.0)
        >>> out.tolist(), part.count
        ([-9999.0, 0.0, 2.0], 2)
        """
        x, _, partials = self._run(x, index, fill, core, scratch)
        return x, partials

    def reduce_axes(
        self,
        x: np.ndarray,
        index: Index,
        fill: Any = None,
        core: Index | None = None,
        scratch: Scratch | None = None,
    ) -> tuple[AxisPartial, list[Partial]]:
        """Statistics of one piece for the closing reduction along axes, and global ones.

        Also returns the partial statistics of each global reduce kernel before it, as
        :meth:`apply` does. Elements equal to ``fill`` (and NaN with ``skipna``) are not counted.

        Examples
        --------
        >>> chain = Chain.from_specs(
        ...     [{"name": "reduce", "op": "count"}, {"name": "reduce", "op": "count", "axis": 0}]
        ... )
        >>> part, (whole,) = chain.reduce_axes(np.array([[1.0, -1.0], [2.0, 3.0]]), (), fill=-1.0)
        >>> part.count.tolist(), whole.count
        ([2, 1], 3)
        """
        kernel = self.axis_reducer
        assert kernel is not None
        x, mask, partials = self._run(x, index, fill, core, scratch)
        valid = None if mask is None else ~mask
        if kernel.skipna and x.dtype.kind == "f":
            valid = ~np.isnan(x) if valid is None else valid & ~np.isnan(x)
        return axis_partial(x, kernel.reduced_axes(x.ndim), kernel.ops[0], valid), partials

    def _run(
        self, x: np.ndarray, index: Index, fill: Any, core: Index | None, scratch: Scratch | None
    ) -> tuple[np.ndarray, np.ndarray | None, list[Partial]]:
        partials = []
        mask = None if fill is None else missing(x, fill)
        halo = core  # until the kernel with neighbours keeps the core, x holds the halo
        for position, kernel in enumerate(self.kernels):
            own = None if scratch is None else scratch.at(position)
            if isinstance(kernel, Reduce):
                if kernel.axis is None:
                    partials.append(kernel.partial(_counted(x, mask, halo), own))
                continue
            y = kernel(x, index, own)
            if kernel.has_halo and core is not None:
                y = y[core]
                mask = None if mask is None else mask[core]
                halo = None
            if mask is not None:
                fill = convert_fill(fill, y.dtype)
                if isinstance(kernel, Broadcast):
                    mask = missing(y, fill)
                elif mask.any():
                    y = converted(y, y.dtype, own) if np.may_share_memory(y, x) else y
                    y[mask] = fill
            x = y
        return x, mask, partials

    def __len__(self) -> int:
        return len(self.kernels)
