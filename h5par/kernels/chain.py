"""A chain of kernels applied in order to each block (pure numpy)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from h5par.decomposition import Index
from h5par.errors import UsageError

from .base import Kernel, make_kernel
from .reduce import Partial, Reduce
from .structural import Broadcast, Reshape

__all__ = ["Chain"]


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
        self, dtype: np.dtype[Any], shape: tuple[int, ...]
    ) -> tuple[np.dtype[Any], tuple[int, ...]]:
        """Validate against a dataset; return the output dtype and shape."""
        for position, kernel in enumerate(self.kernels, 1):
            try:
                kernel.check(dtype, shape)
            except UsageError as exc:
                raise UsageError(f"kernel #{position}: {exc}") from None
            dtype, shape = kernel.result_dtype(dtype), kernel.result_shape(shape)
        return dtype, shape

    def dtype_at(self, position: int, dtype: np.dtype[Any]) -> np.dtype[Any]:
        """Dtype of the data entering kernel ``position`` (0-based)."""
        for kernel in self.kernels[:position]:
            dtype = kernel.result_dtype(dtype)
        return dtype

    @property
    def reshape(self) -> Reshape | None:
        """The reshape kernel, if any."""
        return next((k for k in self.kernels if isinstance(k, Reshape)), None)

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

    def apply(self, x: np.ndarray, index: Index) -> tuple[np.ndarray, list[Partial]]:
        """Transform one block; also return the partial statistics of each reduce kernel."""
        partials = []
        for kernel in self.kernels:
            if isinstance(kernel, Reduce):
                partials.append(kernel.partial(x))
            x = kernel(x, index)
        return x, partials

    def __len__(self) -> int:
        return len(self.kernels)

    def names(self) -> Sequence[str]:
        """Kernel names in order."""
        return [k.name for k in self.kernels]
