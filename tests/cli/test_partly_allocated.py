"""Several ranks writing a chunked dataset one process wrote only partly (h5par.hdf5.allocation).

Both hung for ever on HDF5 1.10.8 before the missing chunks were allocated first: a
one-rank run stopped and resumed on more ranks (its output is written through sec2, chunk
by chunk), and an in-place run on several ranks of an input with unwritten chunks. With
filters the ranks waited in the collective write's shared-chunk exchange, without them in
the next collective flush.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from h5par.hdf5.allocation import partly_allocated

pytestmark = pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun")

RUN = """version = 1
[input]
path = "in.h5"
[output]
{output}
[run]
file_parallel_below = 0
memory = "4MiB"
[[kernels]]
name = "scale"
factor = 2.0
"""

FILTERS: dict[str, dict[str, Any]] = {
    "gzip": {"compression": "gzip", "shuffle": True},
    "unfiltered": {},
}


def h5par_run(mpitools: Any, cwd: Path, nranks: int, fault: str | None = None) -> Any:
    return mpitools.h5par_run(cwd, nranks, fault=fault, timeout=60)


@pytest.mark.parametrize("filters", FILTERS)
@pytest.mark.parametrize("nranks", [2, 3])
def test_a_run_stopped_on_one_rank_resumes_on_more(
    tmp_path: Path, mpitools: Any, filters: str, nranks: int
) -> None:
    data = np.random.default_rng(0).standard_normal((200, 90, 70))
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f.create_dataset("x", data=data, chunks=(17, 23, 70), **FILTERS[filters])
    (tmp_path / "job.toml").write_text(RUN.format(output='path = "out.h5"'))

    stopped = h5par_run(mpitools, tmp_path, 1, "write:0:term:3")
    assert stopped.returncode == 75, stopped.stderr
    with h5py.File(tmp_path / ".out.h5.h5par" / "output.h5", "r") as f:
        assert partly_allocated(f["x"])  # what the resumed ranks find

    resumed = h5par_run(mpitools, tmp_path, nranks)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout + resumed.stderr
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert f["x"][()].tobytes() == (data * 2).tobytes()
        assert f["x"].compression == FILTERS[filters].get("compression")


@pytest.mark.parametrize("filters", FILTERS)
@pytest.mark.parametrize("nranks", [2, 3])
def test_in_place_on_several_ranks_fills_the_holes_of_a_sparse_input(
    tmp_path: Path, mpitools: Any, filters: str, nranks: int
) -> None:
    rng = np.random.default_rng(1)
    expected = np.full((200, 90, 70), 5.0)
    with h5py.File(tmp_path / "in.h5", "w") as f:
        x = f.create_dataset(
            "x", (200, 90, 70), "f8", chunks=(17, 23, 70), fillvalue=5.0, **FILTERS[filters]
        )
        for box in (np.s_[0:17], np.s_[100:117, 0:23], np.s_[190:200, 69:90]):
            x[box] = expected[box] = rng.standard_normal(expected[box].shape)
        assert partly_allocated(x)
    (tmp_path / "job.toml").write_text(RUN.format(output="in_place = true"))

    done = h5par_run(mpitools, tmp_path, nranks)
    assert done.returncode == 0, done.stderr
    with h5py.File(tmp_path / "in.h5", "r") as f:
        assert f["x"][()].tobytes() == (expected * 2).tobytes()
        assert not partly_allocated(f["x"])
