"""Examples run under mpirun and check their own results."""

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("nranks", [1, 2, 3])
def test_parallel_write_read_example(run_mpi, nranks, tmp_path) -> None:
    result = run_mpi(
        nranks, ["-m", "mpi4py", str(EXAMPLES / "parallel_write_read.py"), str(tmp_path / "s.h5")]
    )
    assert result.returncode == 0, result.stderr
    assert f"parallel write/read on {nranks} rank(s): OK" in result.stdout
