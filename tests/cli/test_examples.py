"""Examples run under mpirun and check their own results."""

import ast
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))
#: The book's operations (Collette, *Python and HDF5*), each printing "NAME: OK on N rank(s)".
BOOK = [
    "weather_stations",
    "file_modes_and_drivers",
    "userblock",
    "create_dataset",
    "slicing",
    "clip_negatives",
    "broadcast_row",
    "astype",
    "boolean_mask",
    "reshape_on_write",
    "compression",
    "statistics",
    "simulation_postprocess",
]
EXAMPLE_TIMEOUT = 120  # seconds; each runs in a few seconds at 2 ranks


@pytest.mark.parametrize("nranks", [1, 2, 3])
def test_parallel_write_read_example(run_mpi, nranks, tmp_path) -> None:
    result = run_mpi(
        nranks, ["-m", "mpi4py", str(EXAMPLES / "parallel_write_read.py"), str(tmp_path / "s.h5")]
    )
    assert result.returncode == 0, result.stderr
    assert f"parallel write/read on {nranks} rank(s): OK" in result.stdout


def test_every_book_example_exists() -> None:
    assert sorted(BOOK) == sorted(p.stem for p in SCRIPTS if p.stem != "parallel_write_read")


@pytest.mark.parametrize("name", BOOK)
def test_book_example_on_two_ranks(run_mpi, name, tmp_path) -> None:
    script = EXAMPLES / f"{name}.py"
    args = ["-m", "mpi4py", str(script), str(tmp_path)]
    result = run_mpi(2, args, timeout=EXAMPLE_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == f"{name}: OK on 2 rank(s)", result.stdout
    assert lines.count(lines[-1]) == 1  # printed once, by rank 0


# Break h5par inside the example's processes: the example must notice and exit non-zero.
SABOTAGE = {
    "clip_negatives": "import h5par.kernels as k; k.Clip.__call__ = lambda self, x, index, scratch=None: x",
    "statistics": (
        "import h5par.kernels as k; finish = k.Reduce.finish; "
        "k.Reduce.finish = lambda self, part, dtype: "
        "{op: v * (1 + 1e-9) if op == 'mean' else v for op, v in finish(self, part, dtype).items()}"
    ),
    "boolean_mask": "import h5par.kernels as k; k.Where.__call__ = lambda self, x, index, scratch=None: -x",
}


@pytest.mark.parametrize("name", sorted(SABOTAGE))
def test_book_example_fails_on_a_wrong_result(run_mpi, name, tmp_path) -> None:
    script = EXAMPLES / f"{name}.py"
    code = f"{SABOTAGE[name]}; import runpy; runpy.run_path({str(script)!r}, run_name='__main__')"
    result = run_mpi(2, ["-m", "mpi4py", "-c", code, str(tmp_path)], timeout=EXAMPLE_TIMEOUT)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{name}: MISMATCH in [" in result.stdout
    assert f"{name}: OK" not in result.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_example_is_short_documented_and_has_main(script) -> None:
    text = script.read_text()
    assert len(text.splitlines()) < 80, f"{script.name} has {len(text.splitlines())} lines"
    tree = ast.parse(text)
    docstring = ast.get_docstring(tree) or ""
    run_line = f"mpirun -n 4 python -m mpi4py examples/{script.name}"
    assert run_line in [line.strip() for line in docstring.splitlines()]
    assert "def main(" in text
    (main,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    assert ast.get_docstring(main), "main() needs a docstring"
    assert isinstance(main.returns, ast.Name) and main.returns.id == "int"
    assert all(arg.annotation is not None for arg in main.args.args)
    assert 'if __name__ == "__main__":' in text and "sys.exit(main(" in text
