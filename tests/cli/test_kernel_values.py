"""Kernel values a dtype cannot hold, through the command line (issue 16, items 4 and 13).

``h5par plan`` (one process, reads no data) and ``h5par run`` (2 ranks under mpirun) both
end with one ``h5par: error:`` line naming the kernel, the value and the valid set, exit
status 2 on every rank, nothing written; ``--debug`` shows numpy's own exception.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

WRAPPER = "import sys, h5par.app.cli as c; s = c.main(sys.argv[1:]); print(f'EXIT {s}', flush=True); sys.exit(s)"
FAST_ABORT = {"OMPI_MCA_odls_base_sigkill_timeout": "0"}

JOB = """version = 1
[input]
path = "in.h5"
datasets = ["{dataset}"]
[output]
path = "out.h5"
[run]
file_parallel_below = "1B"
memory = "1KiB"
[[kernels]]
{kernel}
"""

CASES = {
    "scale factor on int8": (
        "/i8",
        'name = "scale"\nfactor = 300',
        (
            "kernel 'scale': factor = 300 cannot be represented in int8",
            "valid: whole numbers -128..127",
        ),
    ),
    "scale factor on int32": (
        "/i4",
        'name = "scale"\nfactor = 3000000000',
        ("factor = 3000000000 cannot be represented in int32", "-2147483648..2147483647"),
    ),
    "where nan into int32": (
        "/i4",
        'name = "where"\ncondition = "x < 0"\nvalue = "nan"',
        ("kernel 'where': value = nan cannot be represented in int32", "valid: whole numbers"),
    ),
    "where condition & float": (
        "/i4",
        'name = "where"\ncondition = "(x < 0) & 1.5"\nvalue = "0"',
        ("condition '(x < 0) & 1.5' cannot be computed on int32 data", "bitwise_and", "valid:"),
    ),
    "where ~ on floats": (
        "/f8",
        'name = "where"\ncondition = "x < 0"\nvalue = "~x"',
        ("value '~x' cannot be computed on float64 data", "invert", "valid:"),
    ),
    "clip nan on integers": (
        "/i4",
        'name = "clip"\nmin = nan',
        ("kernel 'clip': min = nan is not a bound", "valid:"),
    ),
    "deeply nested where": (
        "/f8",
        f'name = "where"\ncondition = "x < 0"\nvalue = "{"-" * 50_000}x"',
        ("nested deeper than 100 levels", "50001 characters", "valid:"),
    ),
}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f["i8"] = np.arange(-20, 20, dtype=np.int8)
        f["i4"] = np.arange(-20, 20, dtype=np.int32)
        f["f8"] = np.linspace(-1, 1, 40)
    return tmp_path


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("h5par: error:")]


@pytest.mark.parametrize("case", CASES)
def test_plan_reports_the_bad_value_in_one_line(work, run_python, case) -> None:
    dataset, kernel, expect = CASES[case]
    (work / "job.toml").write_text(JOB.format(dataset=dataset, kernel=kernel))
    result = run_python(["-m", "h5par", "plan", "job.toml"], cwd=work)
    assert result.returncode == 2, result.stderr
    (line,) = error_lines(result.stderr)
    assert all(e in line for e in expect), line
    assert "Traceback" not in result.stderr and "corrupt" not in line
    assert sorted(p.name for p in work.iterdir()) == ["in.h5", "job.toml"]


@pytest.mark.parametrize(
    "case", ["scale factor on int8", "where nan into int32", "where ~ on floats"]
)
def test_run_on_two_ranks_ends_with_status_2_everywhere(work, run_mpi, case) -> None:
    dataset, kernel, expect = CASES[case]
    (work / "job.toml").write_text(JOB.format(dataset=dataset, kernel=kernel))
    result = run_mpi(2, ["-c", WRAPPER, "run", "job.toml"], cwd=work, env=FAST_ABORT)
    # mpirun may forward a rank's "EXIT 2" and its newline apart: match the statuses only
    assert re.findall(r"EXIT (\d+)", result.stdout) == ["2", "2"], result.stdout + result.stderr
    (line,) = error_lines(result.stderr)
    assert all(e in line for e in expect), line
    assert sorted(p.name for p in work.iterdir()) == ["in.h5", "job.toml"]


def test_debug_shows_numpys_own_exception(work, run_python) -> None:
    dataset, kernel, _ = CASES["where ~ on floats"]
    (work / "job.toml").write_text(JOB.format(dataset=dataset, kernel=kernel))
    result = run_python(["-m", "h5par", "run", "job.toml", "--debug"], cwd=work)
    assert result.returncode == 2
    assert "TypeError: ufunc 'invert' not supported" in result.stderr


def test_where_value_the_data_makes_unrepresentable_is_a_runtime_error(work, run_mpi) -> None:
    kernel = 'name = "where"\ncondition = "x == 0"\nvalue = "1 / x"'
    (work / "job.toml").write_text(JOB.format(dataset="/i4", kernel=kernel))
    result = run_mpi(2, ["-c", WRAPPER, "run", "job.toml"], cwd=work, env=FAST_ABORT)
    assert result.stdout.count("EXIT 1") == 2, result.stdout + result.stderr
    (line,) = error_lines(result.stderr)
    assert "where: value inf (of '1 / x') at index (20,) cannot be represented in int32" in line
    assert sorted(p.name for p in work.iterdir()) == ["in.h5", "job.toml"]
