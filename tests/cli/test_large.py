"""Beyond toy scale: a 4 GiB dataset through 2 ranks with a 64 MiB budget per rank."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

HELPER = str(Path(__file__).with_name("large_job.py"))
BUDGET_KIB = 64 * 1024


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_4gib_dataset_streams_through_a_64mib_budget(run_python, run_mpi, tmp_path) -> None:
    src, dst = tmp_path / "big.h5", tmp_path / "big_clipped.h5"
    try:
        made = run_python([HELPER, "make", str(src), "4"], timeout=600)
        assert made.returncode == 0, made.stderr
        assert src.stat().st_size >= 4 * 2**30
        ran = run_mpi(2, [HELPER, "run", str(src), str(dst), "64MiB"], timeout=600)
        assert ran.returncode == 0, ran.stderr
        report = json.loads(ran.stdout.strip().splitlines()[-1])
        total = sum(report["bytes_read"])
        assert total == 4 * 2**30
        # Each rank moved at least 40% of the bytes.
        assert min(report["bytes_read"]) >= 0.4 * total
        assert min(report["bytes_written"]) >= 0.4 * total
        # Peak RSS over RSS after imports stays within the per-rank budget.
        assert max(report["rss_growth_kib"]) <= BUDGET_KIB, report
        checked = run_python([HELPER, "check", str(dst)], timeout=600)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        src.unlink(missing_ok=True)
        dst.unlink(missing_ok=True)
