"""An input written by another process while a run reads it (for real, two jobs at once).

A run writing ``out.h5`` from ``data.h5`` and an in-place run of another job on ``data.h5``
have two work folders. The output run used to publish a mix of old and new data (exit 0);
now it fails at finalize, writes no output and leaves no work folder.
"""

from __future__ import annotations

import sys
import time

import h5py
import numpy as np
import pytest

WRAPPER = "import sys, h5par.app.cli as c; s = c.main(sys.argv[1:]); print(f'EXIT {s}', flush=True); sys.exit(s)"
MPIRUN = ["mpirun", "--oversubscribe", "-n", "2"]
JOB = """version = 1
[input]
path = "data.h5"
[output]
{output}
[[kernels]]
name = "scale"
factor = 2
[run]
memory = "64KiB"
file_parallel_below = 0
"""


@pytest.mark.timeout(300)
def test_an_output_is_not_published_when_its_input_was_written_meanwhile(
    mpitools, tmp_path
) -> None:
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"] = np.ones(32768)  # 16 units of 16 KiB
    (tmp_path / "copy.toml").write_text(JOB.format(output='path = "out.h5"'))
    (tmp_path / "inplace.toml").write_text(JOB.format(output="in_place = true"))
    env = mpitools.mpi_env()
    reader = mpitools.background(
        [*MPIRUN, sys.executable, "-c", WRAPPER, "run", "copy.toml"],
        tmp_path,
        {**env, "H5PAR_FAULT": "kernel:*:delay=0.5"},
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / ".out.h5.h5par" / "journal.json").is_file():
            assert reader.poll() is None and time.monotonic() < deadline, reader.returncode
            time.sleep(0.05)
        writer = mpitools.launch(
            [sys.executable, "-c", WRAPPER, "run", "inplace.toml"],
            cwd=tmp_path,
            env=env,
            timeout=120,
        )
        assert reader.poll() is None, "the output run ended before the input was written"
    finally:
        code, out, err = mpitools.finish(reader, 180)
    assert writer.returncode == 0, (writer.stdout, writer.stderr)
    lines = [line for line in err.splitlines() if line.startswith("h5par:")]
    assert code == 1 and out.count("EXIT 1") == 2, (out, err)
    assert len(lines) == 1 and "changed while this run read it" in lines[0], err
    assert not (tmp_path / "out.h5").exists()  # no mix of old and new data
    assert not (tmp_path / ".out.h5.h5par").exists()
    with h5py.File(tmp_path / "data.h5", "r") as f:
        assert (f["x"][...] == 2.0).all()


@pytest.mark.timeout(300)
def test_an_input_left_partly_updated_by_a_stopped_in_place_run_is_not_read(
    mpitools, tmp_path
) -> None:
    # A stopped in-place run leaves units old and new; another job reading the file made an
    # output of that mix (exit 0).
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"] = np.ones(32768)
    (tmp_path / "copy.toml").write_text(JOB.format(output='path = "out.h5"'))
    (tmp_path / "inplace.toml").write_text(JOB.format(output="in_place = true"))
    env = mpitools.mpi_env()
    stop = mpitools.launch(
        [*MPIRUN, sys.executable, "-c", WRAPPER, "run", "inplace.toml"],
        cwd=tmp_path,
        env={**env, "H5PAR_FAULT": "write:0:term:3"},
    )
    assert "EXIT 75" in stop.stdout, (stop.stdout, stop.stderr)
    for ranks in ([], MPIRUN):
        read = mpitools.launch(
            [*ranks, sys.executable, "-c", WRAPPER, "run", "copy.toml"], cwd=tmp_path, env=env
        )
        lines = [line for line in read.stderr.splitlines() if line.startswith("h5par:")]
        assert read.returncode == 2 and len(lines) == 1, (read.stdout, read.stderr)
        assert "is partly updated by a stopped in-place run" in lines[0], lines
        assert not (tmp_path / "out.h5").exists()
    done = mpitools.launch(
        [sys.executable, "-c", WRAPPER, "run", "inplace.toml"], cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    read = mpitools.launch(
        [sys.executable, "-c", WRAPPER, "run", "copy.toml"], cwd=tmp_path, env=env
    )
    assert read.returncode == 0, read.stderr
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert (f["x"][...] == 4.0).all()
