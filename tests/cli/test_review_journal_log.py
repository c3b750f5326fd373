"""Review 2026-12-02: an in-place run resumed from a damaged journal must not apply its kernels twice.

The journal is journal.json plus an append-only log; replay skips lines that do not parse.
That is safe for the *last* line (a kill cut it short before the unit's staged data was
dropped), but a damaged line in the middle (or an unreadable journal.json) silently loses
units whose staged data is already gone: the resumed in-place run reads the already
transformed values again and transforms them a second time (exit status 0).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun")

JOB = """version = 1
[input]
path = "in.h5"
[output]
in_place = true
[run]
file_parallel_below = 0
[[kernels]]
name = "scale"
factor = 2.0
"""


def h5par_run(mpitools: Any, cwd: Path, nranks: int, fault: str | None = None) -> Any:
    return mpitools.h5par_run(cwd, nranks, "--quiet", fault=fault, timeout=120)


def killed_in_place_run(tmp_path: Path, mpitools: Any) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    original = {f"d{k:03d}": rng.standard_normal(int(rng.integers(1, 200))) for k in range(100)}
    with h5py.File(tmp_path / "in.h5", "w") as f:
        for name, data in original.items():
            f[name] = data
    (tmp_path / "job.toml").write_text(JOB)
    killed = h5par_run(mpitools, tmp_path, 2, "write:1:kill:30")
    assert killed.returncode != 0
    assert (tmp_path / ".in.h5.h5par" / "journal-1.log").exists()
    return original


def wrong(tmp_path: Path, original: dict[str, np.ndarray]) -> list[str]:
    with h5py.File(tmp_path / "in.h5", "r") as f:
        return [n for n, x in original.items() if f[n][()].tobytes() != (x * 2).tobytes()]


def test_a_damaged_line_in_the_middle_of_the_log_is_not_skipped_in_place(
    tmp_path: Path, mpitools: Any
) -> None:
    original = killed_in_place_run(tmp_path, mpitools)
    log = tmp_path / ".in.h5.h5par" / "journal-1.log"
    lines = log.read_text().splitlines(keepends=True)
    assert len(lines) > 20
    # What a short write (ENOSPC: os.write's count is not checked) or a bit flip leaves.
    assert '"finish"' in lines[9], lines[9]
    lines[9] = lines[9][:25] + "\n"
    log.write_text("".join(lines))

    resumed = h5par_run(mpitools, tmp_path, 2)
    # Refusing (non-zero, the journal named) is fine; exit 0 with data scaled twice is not.
    assert resumed.returncode != 0 or not wrong(tmp_path, original), (
        f"exit {resumed.returncode}, scaled twice: {wrong(tmp_path, original)}"
    )


def test_an_unreadable_journal_state_is_not_a_fresh_start_in_place(
    tmp_path: Path, mpitools: Any
) -> None:
    """Pre-existing (also on 04be6aa): Journal.load returns None, the run starts over."""
    original = killed_in_place_run(tmp_path, mpitools)
    state = tmp_path / ".in.h5.h5par" / "journal.json"
    state.write_bytes(state.read_bytes()[:100])  # a rename persisted before its data

    resumed = h5par_run(mpitools, tmp_path, 2)
    assert resumed.returncode != 0 or not wrong(tmp_path, original), (
        f"exit {resumed.returncode}, scaled twice: {wrong(tmp_path, original)}"
    )
