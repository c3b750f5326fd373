"""``--debug``: the traceback shows the cause HDF5, TOML, the system or the user's code gave.

Without ``--debug`` a failure is one line and its exit status; with it, the traceback of
h5par's error and, above it, the exception it was raised from (``raise ... from exc``):
h5py's ``OSError`` with HDF5's reason, ``tomllib``'s decode error, the user's kernel
module failing at import. The real CLI runs as a subprocess (one process, and 2 ranks).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

WRAPPER = "import sys, h5par.app.cli as c; s = c.main(sys.argv[1:]); print(f'EXIT {s}', flush=True); sys.exit(s)"
FAST_ABORT = {"OMPI_MCA_odls_base_sigkill_timeout": "0"}
CAUSE = "The above exception was the direct cause of the following exception:"
JOB = """version = 1
[input]
path = "{input}"
[output]
path = "out.h5"
[[kernels]]
{kernel}
"""
CLIP = 'name = "clip"\nmin = 0.0'


def h5par(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "h5par", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def not_hdf5(folder: Path) -> Path:
    path = folder / "x.h5"
    path.write_bytes(b"not an HDF5 file, only bytes\n" * 40)
    return path


def job(folder: Path, input: str = "x.h5", kernel: str = CLIP) -> Path:
    path = folder / "job.toml"
    path.write_text(JOB.format(input=input, kernel=kernel))
    return path


def only_one_line(done: subprocess.CompletedProcess[str], *expect: str) -> str:
    report = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 2, report
    (line,) = done.stderr.splitlines()
    assert line.startswith("h5par: error: "), report
    assert all(text in line for text in expect), report
    assert "Traceback" not in done.stderr, report
    return line


def traceback_with_cause(done: subprocess.CompletedProcess[str], line: str, *cause: str) -> None:
    """Exit status 2, the same one line last, and above it the cause's traceback first."""
    report = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 2, report
    lines = done.stderr.splitlines()
    assert lines[-1] == line, report
    assert lines[0] == "Traceback (most recent call last):", report
    head, sep, _ = done.stderr.partition(CAUSE)
    assert sep, f"no chained cause shown:\n{report}"
    for text in cause:
        assert text in head, f"{text!r} not in the cause's traceback:\n{report}"


@pytest.mark.parametrize("verb", ["run", "ls"])
def test_an_input_that_is_not_hdf5_shows_h5pys_oserror_under_debug(tmp_path, verb) -> None:
    data = not_hdf5(tmp_path)
    target = str(job(tmp_path)) if verb == "run" else str(data)
    line = only_one_line(h5par([verb, target], tmp_path), "x.h5' is not an HDF5 file")
    assert "file signature not found" not in line  # HDF5's own words: only under --debug
    done = h5par([verb, target, "--debug"], tmp_path)
    traceback_with_cause(done, line, "OSError: Unable to open file (file signature not found)")


def test_a_corrupt_dataset_header_shows_h5pys_error_through_each_wrapper(tmp_path) -> None:
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f["m"] = np.arange(1000.0)
        address = h5py.h5o.get_info(f["m"].id).addr
    data = bytearray((tmp_path / "in.h5").read_bytes())
    data[address : address + 64] = b"\xa5" * 64  # /m's object header
    (tmp_path / "in.h5").write_bytes(bytes(data))
    path = job(tmp_path, input="in.h5")
    line = only_one_line(h5par(["run", str(path)], tmp_path), "may be corrupt", "cannot open /m")
    done = h5par(["run", str(path), "--debug"], tmp_path)
    traceback_with_cause(done, line, "RuntimeError: Can't get info for object: 'm'")
    # HDF5's refusal of the header -> the walk's OSError naming /m -> the input's UsageError
    assert done.stderr.count(CAUSE) == 2, done.stderr


def test_a_job_with_a_toml_syntax_error_shows_tomllibs_error_under_debug(tmp_path) -> None:
    path = tmp_path / "job.toml"
    path.write_text('version = 1\n[input\npath = "x.h5"\n')
    line = only_one_line(h5par(["run", str(path)], tmp_path), "is not valid TOML")
    done = h5par(["--debug", "run", str(path)], tmp_path)
    traceback_with_cause(done, line, "tomllib.TOMLDecodeError: Expected ']'", "tomllib")


def test_an_unreadable_job_file_shows_the_oserror_under_debug(tmp_path) -> None:
    path = tmp_path / "job.toml"
    path.mkdir()  # reading a folder: IsADirectoryError
    line = only_one_line(h5par(["run", str(path)], tmp_path), "cannot read job file")
    done = h5par(["run", str(path), "--debug"], tmp_path)
    traceback_with_cause(done, line, "IsADirectoryError: [Errno 21]")


def test_a_kernel_module_failing_at_import_shows_its_traceback_under_debug(tmp_path) -> None:
    (tmp_path / "brokenkernel.py").write_text("import math\nmath.sqrt(-1)\n")
    not_hdf5(tmp_path)
    path = job(tmp_path, kernel='name = "python"\nfunction = "brokenkernel:f"')
    expect = ("kernel #1", "importing 'brokenkernel' failed", "ValueError: math domain error")
    line = only_one_line(h5par(["run", str(path)], tmp_path), *expect)
    done = h5par(["run", str(path), "--debug"], tmp_path)
    module = f'File "{tmp_path / "brokenkernel.py"}", line 2, in <module>'
    traceback_with_cause(done, line, module, "ValueError: math domain error")


def test_on_two_ranks_the_failing_rank_shows_hdf5s_cause_under_debug(run_mpi, tmp_path) -> None:
    not_hdf5(tmp_path)
    args = ["-c", WRAPPER, "run", str(job(tmp_path))]
    plain = run_mpi(2, args, cwd=tmp_path, env=FAST_ABORT)
    report = f"stdout:\n{plain.stdout}\nstderr:\n{plain.stderr}"
    assert re.findall(r"EXIT (\d+)", plain.stdout) == ["2", "2"], report
    errors = [line for line in plain.stderr.splitlines() if line.startswith("h5par: error:")]
    assert len(errors) == 1 and "Traceback" not in plain.stderr, report
    done = run_mpi(2, [*args, "--debug"], cwd=tmp_path, env=FAST_ABORT)
    report = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert re.findall(r"EXIT (\d+)", done.stdout) == ["2", "2"], report
    assert done.stderr.count(errors[0]) == 2, report  # --debug: every rank says it
    # every rank inspects a share of the input: each traceback runs from HDF5's refusal
    # through h5par's error naming the file to the agreed one
    assert done.stderr.count("OSError: Unable to open file (file signature not found)") >= 2
    chain = done.stderr.split("OSError: Unable to open file (file signature not found)", 1)
    assert len(chain) == 2 and chain[1].count(CAUSE) >= 2, report
