"""Resume on any number of ranks: stop on A ranks, ``--resume`` on B, for every A != B in 1..3.

"1" is one process started by hand (no mpirun: h5par never starts MPI), the others
``mpirun -n A``. The stop is ``H5PAR_FAULT=write:0:term:3`` (exit 75 at a block boundary);
the resumed run must continue from the journal, not start over, and give data bitwise
equal to one uninterrupted run (in place: every element scaled exactly once).
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

WRAPPER = "import sys, h5par.app.cli as c; s = c.main(sys.argv[1:]); print(f'EXIT {s}', flush=True); sys.exit(s)"
JOB = """version = 1
[input]
path = "in.h5"
[output]
{output}
[[kernels]]
name = "scale"
factor = 2
[run]
memory = "64KiB"
file_parallel_below = 0
"""
OUTPUTS = {"output": 'path = "out.h5"', "in place": "in_place = true"}
DIRECTIONS = [pair for pair in itertools.permutations((1, 2, 3), 2)]


def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    return {
        "x": rng.normal(size=(300, 256)),
        "n": rng.integers(-99, 99, size=(200, 64), dtype="i4"),
    }


def command(nranks: int, *extra: str) -> list[str]:
    cli = [sys.executable, "-c", WRAPPER, "run", "job.toml", *extra]
    return cli if nranks == 1 else ["mpirun", "--oversubscribe", "-n", str(nranks), *cli]


@pytest.mark.parametrize("output", OUTPUTS, ids=str)
@pytest.mark.parametrize(("stop", "resume"), DIRECTIONS, ids=lambda n: str(n))
def test_stop_on_some_ranks_resume_on_others(mpitools, tmp_path, output, stop, resume) -> None:
    arrays = data()
    with h5py.File(tmp_path / "in.h5", "w") as f:
        for name, array in arrays.items():
            f[name] = array
    (tmp_path / "job.toml").write_text(JOB.format(output=OUTPUTS[output]))
    env = mpitools.mpi_env({"H5PAR_FAULT": "write:0:term:3"})
    stopped = mpitools.launch(command(stop), cwd=tmp_path, env=env, timeout=120)
    assert stopped.returncode == 75, stopped.stdout + stopped.stderr
    assert stopped.stdout.count("EXIT 75") == stop
    resumed = mpitools.launch(
        command(resume, "--resume"), cwd=tmp_path, env=mpitools.mpi_env(), timeout=120
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed:" in resumed.stdout, resumed.stdout
    result = tmp_path / ("in.h5" if output == "in place" else "out.h5")
    with h5py.File(result, "r") as f:
        for name, array in arrays.items():
            assert f[name][...].tobytes() == (array * 2).astype(array.dtype).tobytes(), name
    expected = ["in.h5", "job.toml"] + ([] if output == "in place" else ["out.h5"])
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == expected


# What the fingerprint must notice between a stop and a resume: the user kernel's code,
# and an input replaced with its size and times preserved (``cp -p``, ``rsync -t``).

KERNEL_JOB = """version = 1
[input]
path = "in.h5"
[output]
{output}
[[kernels]]
name = "python"
function = "userkernel:change"
[run]
memory = "64KiB"
file_parallel_below = 0
"""


def write_input(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    with h5py.File(folder / "in.h5", "w") as f:
        for name, array in arrays.items():
            f[name] = array


def stop(mpitools, folder: Path, nranks: int = 2):
    env = mpitools.mpi_env({"H5PAR_FAULT": "write:0:term:3"})
    stopped = mpitools.launch(command(nranks), cwd=folder, env=env, timeout=120)
    assert stopped.returncode == 75, stopped.stdout + stopped.stderr


def rerun(mpitools, folder: Path, *extra: str):
    return mpitools.launch(command(2, *extra), cwd=folder, env=mpitools.mpi_env(), timeout=120)


def h5par_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("h5par:")]


@pytest.mark.parametrize("output", OUTPUTS, ids=str)
def test_an_edited_kernel_module_is_not_resumed(mpitools, tmp_path, output) -> None:
    arrays = {"x": data()["x"]}
    write_input(tmp_path, arrays)
    (tmp_path / "job.toml").write_text(KERNEL_JOB.format(output=OUTPUTS[output]))
    module = tmp_path / "userkernel.py"
    module.write_text("def change(x):\n    return x * 2\n")
    stop(mpitools, tmp_path)
    module.write_text("def change(x):\n    return x * 3\n")  # edited between stop and resume
    refused = rerun(mpitools, tmp_path, "--resume")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    (line,) = h5par_lines(refused)
    if output == "in place":  # half of the file holds the old code's results
        assert "partly updated" in line and "kernel code" in line, line
        assert "keep the partial update" not in line, line
    else:
        assert "nothing to resume" in line and "changed" in line, line
        again = rerun(mpitools, tmp_path)  # without --resume: starts over with the new code
        assert again.returncode == 0 and "resumed:" not in again.stdout, again.stderr
        with h5py.File(tmp_path / "out.h5", "r") as f:
            assert f["x"][...].tobytes() == (arrays["x"] * 3).tobytes()


def test_an_output_of_since_edited_kernel_code_is_not_skipped_as_done(mpitools, tmp_path) -> None:
    """A finished output records its functions' code: edited, a rerun does not skip it."""
    arrays = {"x": data()["x"]}
    write_input(tmp_path, arrays)
    (tmp_path / "job.toml").write_text(KERNEL_JOB.format(output=OUTPUTS["output"]))
    module = tmp_path / "userkernel.py"
    module.write_text("def change(x):\n    return x * 2\n")
    assert rerun(mpitools, tmp_path).returncode == 0
    same = rerun(mpitools, tmp_path)  # the same code: done, skipped
    assert same.returncode == 0 and "1 skipped" in same.stdout, same.stdout + same.stderr
    module.write_text("def change(x):\n    return x * 3\n")
    refused = rerun(mpitools, tmp_path)
    assert refused.returncode == 2 and "exists" in refused.stderr, refused.stdout + refused.stderr
    again = rerun(mpitools, tmp_path, "--overwrite")
    assert again.returncode == 0, again.stderr
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert f["x"][...].tobytes() == (arrays["x"] * 3).tobytes()


#: How a file is replaced keeping its times: by a rename (``rsync -t``), or by rewriting
#: the same inode (``cp -p``).
REPLACE = ("rename", "rewrite")


def replace_keeping_times(path: Path, arrays: dict[str, np.ndarray], how: str) -> None:
    """Another file of the same size under the same name, with the old times."""
    before = path.stat()
    replacement = path.with_name("new.h5")
    with h5py.File(replacement, "w") as f:
        for name, array in arrays.items():
            f[name] = array
    assert replacement.stat().st_size == before.st_size
    if how == "rename":
        replacement.replace(path)
    else:
        path.write_bytes(replacement.read_bytes())
        replacement.unlink()
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


@pytest.mark.parametrize("how", REPLACE)
def test_an_input_replaced_with_preserved_times_is_not_resumed(mpitools, tmp_path, how) -> None:
    old, new = data(), {k: v[::-1].copy() for k, v in data().items()}
    write_input(tmp_path, old)
    (tmp_path / "job.toml").write_text(JOB.format(output=OUTPUTS["output"]))
    stop(mpitools, tmp_path)
    replace_keeping_times(tmp_path / "in.h5", new, how)
    refused = rerun(mpitools, tmp_path, "--resume")
    assert refused.returncode == 2 and "nothing to resume" in refused.stderr, refused.stderr
    again = rerun(mpitools, tmp_path)
    assert again.returncode == 0 and "resumed:" not in again.stdout, again.stderr
    with h5py.File(tmp_path / "out.h5", "r") as f:
        for name, array in new.items():
            assert f[name][...].tobytes() == (array * 2).astype(array.dtype).tobytes(), name


@pytest.mark.parametrize("how", REPLACE)
def test_an_input_replaced_with_preserved_times_is_not_skipped_as_done(
    mpitools, tmp_path, how
) -> None:
    old, new = data(), {k: v[::-1].copy() for k, v in data().items()}
    write_input(tmp_path, old)
    (tmp_path / "job.toml").write_text(JOB.format(output=OUTPUTS["output"]))
    assert rerun(mpitools, tmp_path).returncode == 0
    replace_keeping_times(tmp_path / "in.h5", new, how)
    again = rerun(mpitools, tmp_path)
    assert "done by an earlier run" not in again.stdout, again.stdout
    assert again.returncode == 2 and "exists" in again.stderr, again.stderr  # not stale
    redone = rerun(mpitools, tmp_path, "--overwrite")
    assert redone.returncode == 0, redone.stderr
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert f["x"][...].tobytes() == (new["x"] * 2).tobytes()


@pytest.mark.parametrize("how", REPLACE)
def test_an_in_place_input_replaced_after_a_stop_is_not_resumed(mpitools, tmp_path, how) -> None:
    # The resume would skip the units done: the new file would be left half processed.
    old, new = data(), {k: v[::-1].copy() for k, v in data().items()}
    write_input(tmp_path, old)
    (tmp_path / "job.toml").write_text(JOB.format(output=OUTPUTS["in place"]))
    stop(mpitools, tmp_path)
    replace_keeping_times(tmp_path / "in.h5", new, how)
    replaced = (tmp_path / "in.h5").read_bytes()
    refused = rerun(mpitools, tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    (line,) = h5par_lines(refused)
    assert "changed since" in line or "the file, changed since" in line, line
    assert (tmp_path / "in.h5").read_bytes() == replaced  # untouched


MULTI_JOB = """version = 1
[input]
path = "in*.h5"
[output]
path = "out_{stem}.h5"
[[kernels]]
name = "scale"
factor = 2
[run]
memory = "64KiB"
"""


@pytest.mark.parametrize("resume", [1, 2])
def test_resume_of_a_job_of_several_files_starts_those_never_started(
    mpitools, tmp_path, resume
) -> None:
    """--resume after a stop in the first of three files: it resumes that one, starts the
    others (on main it failed at the second: "nothing to resume for out_in1.h5"); once all are
    done, --resume says there is nothing left to resume."""
    arrays = {i: np.random.default_rng(i).normal(size=(64, 512)) for i in range(3)}
    for i, array in arrays.items():
        with h5py.File(tmp_path / f"in{i}.h5", "w") as f:
            f["x"] = array
    (tmp_path / "job.toml").write_text(MULTI_JOB)
    env = mpitools.mpi_env({"H5PAR_FAULT": "write:0:term:3"})
    stopped = mpitools.launch(command(1), cwd=tmp_path, env=env, timeout=120)
    assert stopped.returncode == 75, stopped.stdout + stopped.stderr
    assert not (tmp_path / "out_in1.h5").exists()
    resumed = mpitools.launch(
        command(resume, "--resume"), cwd=tmp_path, env=mpitools.mpi_env(), timeout=120
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.count("resumed:") == 1, resumed.stdout
    for i, array in arrays.items():
        with h5py.File(tmp_path / f"out_in{i}.h5", "r") as f:
            assert f["x"][...].tobytes() == (array * 2).tobytes(), i
    again = mpitools.launch(
        command(1, "--resume"), cwd=tmp_path, env=mpitools.mpi_env(), timeout=120
    )
    assert again.returncode == 2
    assert h5par_lines(again) == [
        "h5par: error: --resume: nothing to resume (3 of 3 files done, none stopped): "
        "run without --resume"
    ]


KILL_JOB = """version = 1
[input]
path = "in.h5"
[output]
path = "out.h5"
[[kernels]]
name = "clip"
min = 0.0
[run]
memory = "{memory}"
"""


@pytest.mark.parametrize(("memory", "nth"), [("1MiB", 5), ("64KiB", 10)], ids=str)
@pytest.mark.parametrize("resume", [1, 2], ids=lambda n: f"resume{n}")
def test_a_one_process_run_killed_mid_write_resumes_bitwise(
    mpitools, tmp_path, memory, nth, resume
) -> None:
    """Killed (not stopped): what the journal calls finished is in the file, flushed.

    On one process HDF5 allocates chunks as they are written and keeps raw data in its
    sieve buffer: without a flush at every checkpoint the resumed output kept zeros.
    """
    rng = np.random.default_rng(5)
    arrays = {"chunked": rng.normal(size=(800, 250)), "contiguous": rng.normal(size=(3000, 40))}
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f.create_dataset("chunked", data=arrays["chunked"], chunks=(20, 250))
        f["contiguous"] = arrays["contiguous"]
    (tmp_path / "job.toml").write_text(KILL_JOB.format(memory=memory))
    env = mpitools.mpi_env({"H5PAR_FAULT": f"write:0:kill:{nth}"})
    killed = mpitools.launch(command(1), cwd=tmp_path, env=env, timeout=120)
    assert killed.returncode != 0 and not (tmp_path / "out.h5").exists()
    resumed = mpitools.launch(command(resume), cwd=tmp_path, env=mpitools.mpi_env(), timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed:" in resumed.stdout + resumed.stderr
    with h5py.File(tmp_path / "out.h5", "r") as f:
        for name, array in arrays.items():
            assert f[name][...].tobytes() == np.clip(array, 0, None).tobytes(), name


def test_a_file_finished_by_a_run_killed_while_finalizing_leaves_nothing_to_resume(
    mpitools, tmp_path
) -> None:
    """In place, killed after its last unit: the rerun finds the file done and removes the
    work folder; a file regenerated under the same name (same inode) is then processed,
    not taken for finished by the old journal (it was: nothing processed, exit 0)."""
    (tmp_path / "job.toml").write_text(JOB.format(output=OUTPUTS["in place"]))
    arrays = data()

    def regenerate() -> None:  # h5py's "w" truncates the file: the inode stays
        with h5py.File(tmp_path / "in.h5", "w") as f:
            for name, array in arrays.items():
                f[name] = array

    regenerate()
    env = mpitools.mpi_env({"H5PAR_FAULT": "finalize:0:kill:1"})
    killed = mpitools.launch(command(1), cwd=tmp_path, env=env, timeout=120)
    assert killed.returncode != 0 and (tmp_path / ".in.h5.h5par").is_dir()
    again = mpitools.launch(command(1), cwd=tmp_path, env=mpitools.mpi_env(), timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert not (tmp_path / ".in.h5.h5par").exists()
    regenerate()
    fresh = mpitools.launch(command(2), cwd=tmp_path, env=mpitools.mpi_env(), timeout=120)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    with h5py.File(tmp_path / "in.h5", "r") as f:
        for name, array in arrays.items():
            assert f[name][...].tobytes() == (array * 2).astype(array.dtype).tobytes(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5", "job.toml"]


def test_a_complete_stopped_run_of_another_job_is_kept_and_resumed(mpitools, tmp_path) -> None:
    """A run of job B stopped after its last unit (all done, not finalized) is kept when
    job A finds the file finished by itself: B's rerun resumes it (B applied once)."""
    write_input(tmp_path, {"x": np.ones(200_000)})
    clip = KILL_JOB.format(memory="256KiB").replace('path = "out.h5"', "in_place = true")
    (tmp_path / "a.toml").write_text(clip)
    scale = JOB.format(output=OUTPUTS["in place"]).replace('"64KiB"', '"256KiB"')
    (tmp_path / "b.toml").write_text(scale)

    def run(job: str, fault: str | None = None):
        cmd = command(1)
        cmd[cmd.index("job.toml")] = job
        env = mpitools.mpi_env({"H5PAR_FAULT": fault} if fault else None)
        return mpitools.launch(cmd, cwd=tmp_path, env=env, timeout=120)

    assert run("a.toml").returncode == 0
    stopped = run("b.toml", "checkpoint:0:usr1:24")  # the last of its 25 checkpoints
    assert stopped.returncode == 75, stopped.stdout + stopped.stderr
    assert run("a.toml").returncode == 0  # done by itself: B's folder is not its own
    assert (tmp_path / ".in.h5.h5par").is_dir()
    resumed = run("b.toml")
    assert resumed.returncode == 0 and "resumed:" in resumed.stdout + resumed.stderr
    with h5py.File(tmp_path / "in.h5", "r") as f:
        assert (f["x"][...] == 2.0).all()  # scaled once
