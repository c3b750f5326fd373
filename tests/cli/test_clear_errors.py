"""One error line, the same exit status on every rank, naming the value and what is valid:
sizes too large, jobs nested too deeply, unreadable chunks, in place on
a subfiled (virtual) file (2 ranks; `plan` finds the job errors too).
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

WRAPPER = "import sys, h5par.app.cli as c; s = c.main(sys.argv[1:]); print(f'EXIT {s}', flush=True); sys.exit(s)"
FAST_ABORT = {"OMPI_MCA_odls_base_sigkill_timeout": "0"}
OPAQUE = Path("/work/shared/data/real/hdf5-tools_tbitnopaque.h5")  # the corpus file, if present
JOB = """version = 1
[input]
path = "{input}"
[output]
{output}
[[kernels]]
name = "clip"
min = {min}
[run]
memory = "{memory}"
file_parallel_below = 0
"""


def job(folder: Path, **keys: str) -> Path:
    values = {"input": "in.h5", "output": 'path = "o.h5"', "min": "0.0", "memory": "1MiB"}
    path = folder / "job.toml"
    path.write_text(JOB.format(**{**values, **keys}))
    return path


@pytest.fixture
def work(tmp_path) -> Path:
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f["x"] = np.arange(4000.0) - 2000
    return tmp_path


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def one_line(run_mpi, folder: Path, args: list[str], status: int, *expect: str) -> str:
    """``h5par ARGS`` on 2 ranks (``plan``: one process planning for 2): one error line
    holding ``expect``, ``status`` on every rank, nothing written."""
    before = files(folder)
    nranks = 1 if args[0] == "plan" else 2
    args = [*args, "--ranks", "2"] if args[0] == "plan" else args
    done = run_mpi(nranks, ["-c", WRAPPER, *args], cwd=folder, env=FAST_ABORT)
    report = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert re.findall(r"EXIT (\d+)", done.stdout) == [str(status)] * nranks, report
    errors = [line for line in done.stderr.splitlines() if line.startswith("h5par: error:")]
    assert len(errors) == 1, report
    for text in expect:
        assert text in errors[0], f"{text!r} not in {errors[0]!r}"
    assert "Traceback" not in done.stderr and "HDF5-DIAG" not in done.stderr, report
    assert files(folder) == before, report  # no output, no work folder
    return errors[0]


def test_a_size_too_large_is_a_usage_error(run_mpi, work) -> None:
    path = job(work, memory="1" + "0" * 400 + "MiB")
    for verb in ("run", "plan"):
        one_line(run_mpi, work, [verb, str(path)], 2, "run.memory", "too large", "at most 8 EiB")


@pytest.mark.parametrize("depth", [40, 2000])
def test_a_job_nested_too_deeply_is_a_usage_error(run_mpi, work, depth) -> None:
    path = job(work, min="[" * depth + "0.0" + "]" * depth)
    for verb in ("run", "plan"):
        one_line(run_mpi, work, [verb, str(path)], 2, "job.toml", "nests arrays or tables too")
    args = ["run", str(job(work)), "--set", "kernels.0.min=" + "[" * depth + "0" + "]" * depth]
    one_line(run_mpi, work, args, 2, "--set kernels.0.min=", "at most 32 levels")


def test_an_opaque_dataset_is_recompressed_keeping_its_tag_and_bytes(run_mpi, work) -> None:
    """A tagged opaque type (once an OSError naming nothing) moves in its own HDF5 type."""
    src = work / "opaque.h5"
    if OPAQUE.is_file():
        src.write_bytes(OPAQUE.read_bytes())
        name = "/opaquetypetests/opaque_1"
    else:  # the same kind of file: a tagged opaque type (h5py cannot read it as numpy data)
        with h5py.File(src, "w") as f:
            tid = h5py.h5t.create(h5py.h5t.OPAQUE, 1)
            tid.set_tag(b"1-byte opaque type")
            space = h5py.h5s.create_simple((32,))
            h5py.h5d.create(f.id, b"o", tid, space)
        name = "/o"
    path = job(work, input="opaque.h5", output='path = "o.h5"\ncompression = "gzip"')
    path.write_text(path.read_text().replace('[[kernels]]\nname = "clip"\nmin = 0.0\n', ""))
    done = run_mpi(2, ["-c", WRAPPER, "run", str(path)], cwd=work, env=FAST_ABORT)
    assert re.findall(r"EXIT (\d+)", done.stdout) == ["0", "0"], done.stderr
    with h5py.File(src, "r") as a, h5py.File(work / "o.h5", "r") as b:
        ta, tb = a[name].id.get_type(), b[name].id.get_type()
        assert tb.get_class() == h5py.h5t.OPAQUE and tb.get_tag() == ta.get_tag()
        assert b[name].compression == "gzip"
        raw = [np.empty(d.shape, d.dtype) for d in (a[name], b[name])]
        for d, out in zip((a[name], b[name]), raw, strict=True):
            d.id.read(h5py.h5s.ALL, h5py.h5s.ALL, out, mtype=d.id.get_type())
        assert raw[0].tobytes() == raw[1].tobytes()


def test_an_unreadable_chunk_names_file_and_dataset(run_mpi, work) -> None:
    with h5py.File(work / "bad.h5", "w") as f:
        data = np.random.default_rng(0).normal(size=4000)
        dset = f.create_dataset("x", data=data, chunks=(1000,), compression="gzip")
        offset = dset.id.get_chunk_info(1).byte_offset
    with open(work / "bad.h5", "r+b") as handle:
        handle.seek(offset + 10)
        handle.write(b"\xff" * 40)
    path = job(work, input="bad.h5")
    one_line(
        run_mpi, work, ["run", str(path)], 1, "cannot read dataset /x of ", "bad.h5", "inflate"
    )


@pytest.mark.timeout(300)
def test_in_place_on_a_subfiled_file_at_2_ranks_says_what_works(run_mpi, work) -> None:
    made = run_mpi(
        2, ["-m", "h5par", "run", str(job(work, output='path = "sub.h5"\nlayout = "subfiled"'))]
    )
    assert made.returncode == 0, made.stderr
    with h5py.File(work / "sub.h5") as f:
        assert f["x"].is_virtual
    path = job(work, input="sub.h5", output="in_place = true")
    for verb in ("run", "plan"):
        one_line(
            run_mpi, work, [verb, str(path)], 2, "sub.h5", "dataset /x is virtual",
            "2 ranks cannot update it in place", "run on one rank", "h5par consolidate",
        )  # fmt: skip
    done = run_mpi(1, ["-m", "h5par", "run", str(path)], cwd=work)
    assert done.returncode == 0, done.stderr  # one rank can: HDF5 writes through the parts
    with h5py.File(work / "sub.h5") as f:
        assert (f["x"][...] == np.clip(np.arange(4000.0) - 2000, 0, None)).all()


def test_plan_for_too_many_ranks_is_a_usage_error(run_python, work) -> None:
    done = run_python(["-m", "h5par", "plan", str(job(work)), "--ranks", "100000000000"], cwd=work)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("h5par: error:")]
    assert errors == ["h5par: error: --ranks 100000000000: expected 1..1048576 ranks"], done.stderr


@pytest.mark.parametrize(
    ("selection", "expect"),
    [
        ("0:4, 64:192", "axis 1 of length 16 would be empty: 64:192 selects no element"),
        ("5:5", "axis 0 of length 1 would be empty: 5:5 selects no element"),
        ("..., []", "axis 3 of length 8 would be empty: [] selects no element"),
    ],
)
def test_a_selection_leaving_an_axis_empty_is_a_job_error(run_mpi, work, selection, expect) -> None:
    with h5py.File(work / "in.h5", "a") as f:
        f["T"] = np.zeros((1, 16, 8, 8), np.float32)
    text = (
        job(work).read_text().replace("[output]", f'[input.select]\n"/T" = "{selection}"\n[output]')
    )
    (work / "job.toml").write_text(text)
    for verb in ("run", "plan"):
        one_line(
            run_mpi, work, [verb, "job.toml"], 2, "dataset /T", f"selection '{selection}'", expect
        )
