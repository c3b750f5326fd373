"""What ``h5par kernels`` shows: every kernel, from the registry (so it cannot go stale)."""

from __future__ import annotations

import dataclasses
import textwrap
from typing import Any

from h5par.kernels import KERNELS, Kernel

__all__ = ["kernel_catalog", "parameters"]


def _toml(value: Any) -> str:
    """A default as it would be written in a job file (None: not set)."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def parameters(kernel: type[Kernel]) -> list[str]:
    """``name (required)`` or ``name = default`` for each parameter, required ones first.

    >>> parameters(KERNELS["clip"])
    ['min = unset', 'max = unset']
    >>> parameters(KERNELS["astype"])
    ['dtype (required)', 'overflow = "error"']
    """
    required, optional = [], []
    for field in dataclasses.fields(kernel):
        if not field.init:
            continue
        if field.default is not dataclasses.MISSING:
            optional.append(f"{field.name} = {_toml(field.default)}")
        elif field.default_factory is not dataclasses.MISSING:
            optional.append(f"{field.name} = {_toml(field.default_factory())}")
        else:
            required.append(f"{field.name} (required)")
    return required + optional


def kernel_catalog(width: int = 92) -> str:
    """Every registered kernel: its name, what it does, its parameters and their defaults."""
    lines = [f"{len(KERNELS)} kernels (a job's [[kernels]] tables, applied in order):", ""]
    for name in sorted(KERNELS):
        kernel = KERNELS[name]
        summary = (kernel.__doc__ or "").strip().split("\n\n")[0].replace("``", "`")
        lines += textwrap.wrap(
            f"{name}: {' '.join(summary.split())}", width, subsequent_indent="    "
        )
        params = parameters(kernel)
        text = "parameters: " + (", ".join(params) if params else "none")
        lines += textwrap.wrap(text, width, initial_indent="    ", subsequent_indent="        ")
    return "\n".join(lines)
