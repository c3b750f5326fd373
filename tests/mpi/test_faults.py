"""Faults injected at every phase on every rank (1-4 ranks, in process), stop and resume.

Faults that leave the other ranks inside a collective HDF5 call end in MPI_Abort and are
tested through the command line (tests/cli/test_faults.py); here every fault ends in an
agreed error that each rank can check.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
from mpi4py import MPI

import h5par
from h5par.errors import CollectiveError, H5ParError, StoppedError
from h5par.parallel.faults import InjectedFaultError
from h5par.parallel.guard import stop_signals

pytestmark = pytest.mark.mpi(min_size=1)

comm = MPI.COMM_WORLD
#: Points a rank can fail at while the others can still agree (not inside a collective call).
GRACEFUL = ("validate", "inspect", "create", "read", "kernel", "write", "checkpoint", "finalize")
MEMORY = "64KiB"  # units of 16 KiB: dozens of collective steps


@pytest.fixture
def folder(tmp_path_factory) -> Path:
    path = str(tmp_path_factory.mktemp("faults")) if comm.rank == 0 else None
    return Path(comm.bcast(path))


@pytest.fixture
def fault() -> Iterator[None]:
    yield
    os.environ.pop("H5PAR_FAULT", None)


def make_input(path: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    data = {"x": rng.normal(size=(601, 67)), "z": rng.normal(size=(150, 40)).astype("f4")}
    if comm.rank == 0:
        with h5py.File(path, "w") as f:
            f["x"] = data["x"]
            f.create_dataset("z", data=data["z"], chunks=(10, 40), compression="gzip")
    comm.Barrier()
    return data


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_all(path: Path) -> dict[str, bytes]:
    with h5py.File(path, "r") as f:
        return {k: f[k][...].tobytes() for k in ("x", "z")}


def expect_failure(point: str, bad: int, call) -> str:
    """Run ``call`` with a fault on rank ``bad``; return the message every rank got."""
    os.environ["H5PAR_FAULT"] = (
        f"{point}:{bad}:raise:2"
        if point in ("read", "kernel", "write", "checkpoint")
        else f"{point}:{bad}:raise"
    )
    with pytest.raises((H5ParError, InjectedFaultError)) as info:
        call()
    os.environ.pop("H5PAR_FAULT")
    message = str(info.value)
    assert f"injected fault at {point} on rank {bad}" in message
    if comm.size > 1:
        assert isinstance(info.value, CollectiveError) and info.value.rank == bad
        assert f"rank {bad} of {comm.size}" in message
    assert comm.allgather(message) == [message] * comm.size
    return message


@pytest.mark.parametrize("point", GRACEFUL)
@pytest.mark.parametrize("bad", range(4))
def test_exception_at_each_phase_on_each_rank_fails_every_rank_and_leaves_nothing(
    folder, fault, point, bad
) -> None:
    if bad >= comm.size:
        pytest.skip(f"no rank {bad} in a {comm.size}-rank run")
    make_input(folder / "in.h5")
    before = digest(folder / "in.h5") if comm.rank == 0 else None
    out = folder / "out.h5"
    expect_failure(
        point,
        bad,
        lambda: h5par.apply(folder / "in.h5", out, [{"name": "scale", "factor": 2}], memory=MEMORY),
    )
    if comm.rank == 0:
        assert sorted(p.name for p in folder.iterdir()) == ["in.h5"]  # no output, no work folder
        assert digest(folder / "in.h5") == before
    # The same job runs cleanly afterwards.
    result = h5par.apply(folder / "in.h5", out, [{"name": "scale", "factor": 2}], memory=MEMORY)
    assert result.resumed_units == 0


def test_in_place_failure_keeps_the_journal_and_a_rerun_finishes_without_applying_twice(
    folder, fault
) -> None:
    data = make_input(folder / "in.h5")
    job = {
        "input": folder / "in.h5",
        "kernels": [{"name": "scale", "factor": 3}],
        "memory": MEMORY,
        "in_place": True,
    }
    bad = comm.size - 1
    message = expect_failure("kernel", bad, lambda: h5par.apply(**job))
    assert "is partly updated" in message and "rerun the same job" in message
    assert (folder / ".in.h5.h5par" / "journal.json").exists()
    result = h5par.apply(**job)
    assert result.resumed_units > 0
    if comm.rank == 0:
        got = read_all(folder / "in.h5")
        assert got["x"] == (data["x"] * 3).tobytes()
        assert got["z"] == (data["z"] * np.float32(3)).tobytes()
        assert not (folder / ".in.h5.h5par").exists()


def stop_then_resume(folder: Path, job: dict, nth: int) -> tuple[h5par.Result, str]:
    """Send SIGUSR1 to the last rank at its nth write, then rerun the job."""
    os.environ["H5PAR_FAULT"] = f"write:{comm.size - 1}:usr1:{nth}"
    with stop_signals(), pytest.raises(StoppedError) as info:
        h5par.apply(**job)
    os.environ.pop("H5PAR_FAULT")
    message = str(info.value)
    assert message.startswith("stopped on SIGUSR1 at a block boundary")
    assert info.value.exit_status == 75
    return h5par.apply(**job), message


@pytest.mark.parametrize("in_place", [False, True], ids=["output", "in-place"])
def test_stop_at_a_block_boundary_then_resume_is_bitwise_a_clean_run(
    folder, fault, in_place
) -> None:
    data = make_input(folder / "in.h5")
    kernels = [{"name": "clip", "min": -0.5}, {"name": "scale", "factor": 1.5, "offset": 1}]
    job = {"input": folder / "in.h5", "kernels": kernels, "memory": MEMORY}
    job |= {"in_place": True} if in_place else {"output": folder / "out.h5"}
    result, message = stop_then_resume(folder, job, nth=3)
    assert result.resumed_units > 0, message
    if comm.rank == 0:
        got = read_all(folder / ("in.h5" if in_place else "out.h5"))
        for name in ("x", "z"):
            x = data[name]
            want = np.clip(x, x.dtype.type(-0.5), None) * x.dtype.type(1.5) + x.dtype.type(1)
            assert got[name] == want.tobytes(), name
        assert sorted(p.name for p in folder.iterdir()) == ["in.h5"] + (
            [] if in_place else ["out.h5"]
        )


def test_statistics_survive_a_stop(folder, fault) -> None:
    data = make_input(folder / "in.h5")
    ops = ["min", "max", "count", "sum", "mean", "std", "histogram"]
    job = {
        "input": folder / "in.h5",
        "output": folder / "out.h5",
        "kernels": [{"name": "reduce", "op": ops, "bins": 7}],
        "memory": MEMORY,
    }
    result, _ = stop_then_resume(folder, job, nth=3)
    assert result.resumed_units > 0
    for name in ("x", "z"):
        x, got = data[name], result.reductions[f"/{name}"]
        assert got["min"] == x.min() and got["max"] == x.max() and got["count"] == x.size
        counts, edges = np.histogram(x, bins=7)
        assert got["histogram"] == {"counts": counts.tolist(), "edges": edges.tolist()}
        scale = np.abs(x.astype("f8")).sum()
        assert abs(got["sum"] - x.astype("f8").sum()) <= 1e-12 * scale
        assert abs(got["mean"] - x.astype("f8").mean()) <= 1e-12 * scale
        assert abs(got["std"] - x.astype("f8").std()) <= 1e-12 * scale


@pytest.mark.parametrize("kind", ["smooth", "time-max", "subfiled"])
def test_neighbourhood_kernels_axis_reductions_and_subfiled_output_resume_bitwise(
    folder, fault, kind
) -> None:
    data = make_input(folder / "in.h5")
    kernels = {
        "smooth": [{"name": "smooth", "size": 5, "mode": "wrap"}],
        "time-max": [{"name": "reduce", "op": "max", "axis": 0}],
        "subfiled": [{"name": "scale", "factor": 2.0}],
    }[kind]
    job = {"input": folder / "in.h5", "output": folder / "out.h5", "kernels": kernels}
    if kind == "subfiled":
        job["options"] = h5par.OutputOptions(layout="subfiled")
    result, message = stop_then_resume(folder, job | {"memory": "16KiB"}, nth=2)
    assert result.resumed_units > 0, message
    if comm.rank == 0:
        got = read_all(folder / "out.h5")
    comm.Barrier()
    h5par.apply(**job, memory="16KiB", overwrite=True)  # a clean run, for comparison
    if comm.rank == 0:
        assert read_all(folder / "out.h5") == got
        if kind == "time-max":
            assert got["x"] == np.max(data["x"], 0).tobytes()
        if kind == "subfiled":
            assert got["x"] == (data["x"] * 2.0).tobytes()
            assert got["z"] == (data["z"] * 2.0).tobytes()


@pytest.mark.parametrize("bad", range(4))
def test_an_agreement_enters_its_fault_points_before_its_block(fault, bad) -> None:
    from h5par.parallel import faults
    from h5par.parallel.agreement import collective_errors

    if bad >= comm.size:
        pytest.skip(f"no rank {bad} in a {comm.size}-rank run")
    faults.reset()
    os.environ["H5PAR_FAULT"] = f"kernel:{bad}:raise:2, read:*:raise"
    ran = []
    with pytest.raises((CollectiveError, InjectedFaultError)) as info:
        for step in range(3):
            with collective_errors(comm, "read"):  # named like a fault point: enters none
                pass
            with collective_errors(comm, "processing /x", fault=("kernel",)):
                ran.append(step)
    assert f"injected fault at kernel on rank {bad}" in str(info.value)
    assert ran == ([0] if comm.rank == bad else [0, 1])  # the failing rank skipped its block
    faults.reset()
    os.environ["H5PAR_FAULT"] = f"kernel:{bad}:raise, read:{bad}:raise"
    entered = collective_errors(comm, "processing /x", fault=("read", "kernel"))
    with pytest.raises((CollectiveError, InjectedFaultError)) as info, entered:
        pass
    assert f"injected fault at read on rank {bad}" in str(info.value)  # in order: read first


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(120)
def test_failure_notices_are_all_taken_after_the_agreement() -> None:
    # A rank that fails posts a notice to every other rank; when the ranks agree, every
    # notice is received and every send completed: nothing stays pending for MPI_Finalize.
    from h5par import comm as comms
    from h5par.parallel.agreement import collective_errors
    from h5par.parallel.guard import guarded

    assert comms.notices_possible(), "mpi4py initialises MPI_THREAD_MULTIPLE"
    channel = comms.private(comm)
    with guarded(60):
        for bad in [*range(comm.size), None]:
            with pytest.raises(CollectiveError) as info, collective_errors(comm, "step"):
                if bad is None or comm.rank == bad:  # None: every rank fails
                    raise RuntimeError(f"failed on rank {comm.rank}")
            assert info.value.rank == (0 if bad is None else bad)
    comm.Barrier()
    channel.Barrier()  # any notice still in flight has arrived by now
    assert not channel.iprobe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG)
    assert not comms._RECEIVED
