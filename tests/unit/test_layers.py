"""The package's shape: what importing a layer loads, and the size of its functions.

The import contract between the layer folders is checked by ``lint-imports`` (``make lint``,
contracts in pyproject.toml); these tests check what the static contract cannot see: modules
loaded at run time, and functions that grow past what reads in one screen.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "h5par"
#: Longest function body (lines, the docstring excluded) and most positional parameters.
MAX_LINES = 60
MAX_POSITIONAL = 8
HEAVY = ("mpi4py", "h5py", "h5par.parallel", "h5par.hdf5", "h5par.engine", "h5par.app")


def _loaded_after(statement: str) -> list[str]:
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return [m for m in json.loads(out.stdout) if m.split(".")[0] in ("h5par", "mpi4py", "h5py")]


@pytest.mark.parametrize(
    "statement",
    [
        "import h5par",
        "import h5par.kernels",
        "import h5par.core.units, h5par.core.layout, h5par.core.slicing",
        "from h5par import OutputOptions, UsageError, KERNELS, __version__",
    ],
)
def test_pure_imports_load_no_mpi_and_no_hdf5(statement: str) -> None:
    loaded = _loaded_after(statement)
    heavy = [m for m in loaded if m.startswith(HEAVY)]
    assert heavy == [], f"{statement!r} loaded {heavy}"


def test_public_names_still_resolve() -> None:
    loaded = _loaded_after(
        "import h5par\n"
        "assert callable(h5par.apply) and callable(h5par.run) and callable(h5par.consolidate)\n"
        "assert h5par.File and h5par.Job and h5par.load_job and h5par.Result and h5par.JobResult\n"
        "assert h5par.comm.world() == (0, 1)"
    )
    assert "h5par.parallel.comm" in loaded and "h5py" in loaded


def _functions() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                found.append((f"{path.relative_to(PACKAGE.parent)}:{node.lineno}", node))
    return found


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = node.body[0]
    docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    body = node.body[1:] if docstring and len(node.body) > 1 else node.body
    return (node.end_lineno or node.lineno) - body[0].lineno + 1


def _positional(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    names = [a.arg for a in node.args.posonlyargs + node.args.args]
    return len(names) - (1 if names[:1] in (["self"], ["cls"]) else 0)


def test_functions_fit_on_a_screen() -> None:
    long = [
        f"{w} {n.name}: {_body_lines(n)} lines"
        for w, n in _functions()
        if _body_lines(n) > MAX_LINES
    ]
    assert long == [], f"functions longer than {MAX_LINES} lines (docstring excluded): {long}"


def test_no_long_positional_parameter_lists() -> None:
    many = [
        f"{w} {n.name}: {_positional(n)}"
        for w, n in _functions()
        if _positional(n) > MAX_POSITIONAL
    ]
    assert many == [], f"more than {MAX_POSITIONAL} positional parameters: {many}"
