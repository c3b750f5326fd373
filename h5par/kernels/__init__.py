"""Kernels: pure numpy block transformations and reductions (no MPI, no h5py).

Each kernel is a frozen dataclass registered under its job-file name; see
:data:`~h5par.kernels.base.KERNELS`.
"""

from .axes import AxisPartial
from .base import KERNELS, Kernel, KernelError, Scratch, make_kernel
from .chain import Chain
from .convert import AsType
from .elementwise import Abs, Clip, Fill, Scale, Where
from .neighbourhood import Gradient, MovingMean, Smooth
from .reduce import Partial, Reduce, combine_all
from .structural import Broadcast, Reshape
from .user import PythonKernel

__all__ = [
    "KERNELS",
    "Abs",
    "AsType",
    "AxisPartial",
    "Broadcast",
    "Chain",
    "Clip",
    "Fill",
    "Gradient",
    "Kernel",
    "KernelError",
    "MovingMean",
    "Partial",
    "PythonKernel",
    "Reduce",
    "Reshape",
    "Scale",
    "Scratch",
    "Smooth",
    "Where",
    "combine_all",
    "make_kernel",
]
