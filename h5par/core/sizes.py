"""Parse and format byte sizes such as ``"256MiB"`` (pure, no MPI)."""

from __future__ import annotations

import re
from decimal import Decimal

__all__ = ["MAX_SIZE", "format_size", "parse_size"]

_UNITS = {
    "": 1,
    "B": 1,
    "K": 2**10,
    "KIB": 2**10,
    "KB": 10**3,
    "M": 2**20,
    "MIB": 2**20,
    "MB": 10**6,
    "G": 2**30,
    "GIB": 2**30,
    "GB": 10**9,
    "T": 2**40,
    "TIB": 2**40,
    "TB": 10**12,
}
_PATTERN = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$", re.ASCII)
#: The largest size: what a signed 64-bit byte count (off_t, numpy's intp) holds.
MAX_SIZE = 2**63 - 1


def parse_size(value: str | int) -> int:
    """Return the number of bytes in a size such as ``"256MiB"``, ``"1.5GB"`` or ``4096``.

    Single letters (``K``, ``M``, ``G``, ``T``) are binary multiples, as in SLURM's ``--mem``.

    Examples
    --------
    >>> parse_size("256MiB")
    268435456
    >>> parse_size("64M") == parse_size("64MiB")
    True
    >>> parse_size("2GB")
    2000000000
    >>> parse_size("1" + "0" * 400 + "MiB")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: invalid size '100...00MiB': too large (valid: at most 8 EiB, 2**63 - 1 bytes)
    >>> parse_size("lots")
    Traceback (most recent call last):
    ...
    ValueError: invalid size 'lots': expected a number with an optional unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB), e.g. '256MiB'
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}: expected a positive number of bytes")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"invalid size {value!r}: expected a positive number of bytes")
        return _bounded(value, value)
    match = _PATTERN.match(str(value))
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(
            f"invalid size {value!r}: expected a number with an optional unit "
            "(B, KiB, MiB, GiB, TiB, KB, MB, GB, TB), e.g. '256MiB'"
        )
    nbytes = int(Decimal(match.group(1)) * _UNITS[unit])  # exact: no float overflow
    if nbytes <= 0:
        raise ValueError(f"invalid size {value!r}: expected a positive number of bytes")
    return _bounded(nbytes, value)


def _bounded(nbytes: int, value: str | int) -> int:
    if nbytes > MAX_SIZE:
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:6]}...{repr(value)[-6:]}"
        raise ValueError(f"invalid size {shown}: too large (valid: at most 8 EiB, 2**63 - 1 bytes)")
    return nbytes


def format_size(nbytes: float) -> str:
    """Format a byte count with a binary unit.

    Examples
    --------
    >>> format_size(268435456)
    '256.0 MiB'
    >>> format_size(12)
    '12 B'
    """
    if nbytes < 1024:
        return f"{int(nbytes)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        nbytes /= 1024
        if nbytes < 1024 or unit == "TiB":
            break
    return f"{nbytes:.1f} {unit}"
