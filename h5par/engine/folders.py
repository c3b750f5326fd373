"""Output folders: checked while validating, created by rank 0 before the data pass.

An output path such as ``clean/{stem}_clean.h5`` may name folders that do not exist yet.
Validation (every rank, before anything is written) checks that they can be created: the
deepest existing folder of the path must be a writable folder. Rank 0 creates them once the
job is validated; ``h5par plan`` lists them.
"""

from __future__ import annotations

import os
from pathlib import Path

from h5par.errors import UsageError

__all__ = ["check_output_folder", "make_output_folder", "new_folders"]


def new_folders(folder: Path) -> list[Path]:
    """The folders of ``folder``'s path that do not exist yet, outermost first.

    Examples
    --------
    >>> import tempfile
    >>> base = Path(tempfile.mkdtemp())
    >>> [p.relative_to(base).as_posix() for p in new_folders(base / "a" / "b")]
    ['a', 'a/b']
    >>> new_folders(base)
    []
    """
    missing = []
    while not os.path.lexists(folder) and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]


def check_output_folder(folder: Path) -> None:
    """Refuse an output folder that neither exists nor can be created (UsageError, exit 2)."""
    missing = new_folders(folder)
    existing = missing[0].parent if missing else folder
    name = repr(str(folder))
    if not existing.is_dir():
        what = f"{str(existing)!r} is not a folder"
        raise UsageError(f"output folder {name} cannot be created: {what}")
    if not os.access(existing, os.W_OK | os.X_OK):  # root too: read-only mounts, immutable
        why = (
            "a read-only file system"
            if os.statvfs(existing).f_flag & os.ST_RDONLY
            else "no permission to create files in it"
        )
        if not missing:
            raise UsageError(f"output folder {name} is not writable ({why})")
        raise UsageError(
            f"output folder {name} cannot be created: {str(existing)!r} is not writable ({why})"
        )


def make_output_folder(folder: Path) -> None:
    """Create ``folder`` and its missing parents (rank 0, after validation); one-line errors."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise UsageError(f"cannot create output folder {str(folder)!r}: {why}") from exc
