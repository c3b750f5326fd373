"""Review 2026-12-02: Journal.checkpoint ignores os.write's count.

A regular file's write returns a short count, not an error, when the disk fills in the
middle of it (ENOSPC comes with the next write). The checkpoint then goes on as if the
lines were on disk, and the in-place sweep deletes the units' staged data; the cut line is
skipped on replay and the unit is transformed a second time on resume.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from h5par.engine import journal as journal_module
from h5par.engine.journal import Journal


def test_a_short_write_of_the_log_is_not_taken_for_a_whole_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    j = Journal(tmp_path, "f", units={"/x": 4, "/y": 4})
    j.save()
    real = os.write

    def short(fd: int, data: bytes) -> int:  # what ENOSPC does to a regular file's write
        return real(fd, data[: len(data) // 2])

    monkeypatch.setattr(journal_module.os, "write", short)
    j.finish("/x", [0, 1, 2, 3])
    j.finish("/y", [0, 1])
    try:
        j.checkpoint()
    except OSError:
        return  # refusing is right: the caller must not drop staged data
    monkeypatch.setattr(journal_module.os, "write", real)
    loaded = Journal.load(tmp_path)
    assert loaded is not None
    assert loaded.done == {"/x": [[0, 4]], "/y": [[0, 2]]}, "checkpoint returned, lines lost"
