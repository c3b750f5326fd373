"""Series over many files through `h5par run` and `plan` (issue 20): NCO's ncrcat, ncra
and nces as oracles on netCDF-4 dumps written by netCDF4-python, a virtual output read by
HDF5's and netCDF's tools, every problem one line with exit 2 found by plan and nothing
left behind, a stop resumed on another rank count, a rerun that skips a finished series.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

netCDF4 = pytest.importorskip("netCDF4")  # noqa: N816 (the module's own name)

LENGTHS = (3, 2, 4, 1)
GRID = (9, 11)
JOB = """[input]
path = "snap_*.nc"
combine = "{combine}"
[output]
path = "{output}"
[run]
memory = "2KiB"
file_parallel_below = 0
"""
MEAN = '[[kernels]]\nname = "reduce"\nop = "mean"\naxis = 0\n'
NCO = pytest.mark.skipif(shutil.which("ncrcat") is None, reason="NCO is not installed")


def write_dumps(folder: Path, lengths=LENGTHS, seed: int = 5) -> None:
    """netCDF-4 dumps as a model writes them: a record axis, coordinates, a static field."""
    rng = np.random.default_rng(seed)
    start = 0
    for k, n in enumerate(lengths):
        with netCDF4.Dataset(folder / f"snap_{k}.nc", "w") as d:
            d.createDimension("time", None)
            for name, size in zip(("lat", "lon"), GRID, strict=True):
                d.createDimension(name, size)
                d.createVariable(name, "f4", (name,))[:] = np.arange(size)
            time = d.createVariable("time", "f8", ("time",))
            time.units = "days since 2000-01-01"
            time[:] = np.arange(start, start + n)
            t = d.createVariable("T", "f4", ("time", "lat", "lon"), zlib=True)
            t.units = "K"
            t[:] = rng.normal(280, 10, (n, *GRID)).astype("f4")
            d.createVariable("topo", "f4", ("lat", "lon"))[:] = rng.random(GRID)
            d.history = f"written by the model, dump {k}"
            start += n


@pytest.fixture
def work(tmp_path) -> Path:
    write_dumps(tmp_path)
    return tmp_path


def data(folder: Path, name: str, pattern: str = "snap_*.nc", how=np.concatenate) -> np.ndarray:
    files = sorted(folder.glob(pattern), key=lambda p: int(re.findall(r"\d+", p.name)[-1]))
    arrays = []
    for path in files:
        with h5py.File(path) as f:
            arrays.append(f[name][...])
    return how(arrays)


def nco(folder: Path, *args: str) -> None:
    done = subprocess.run(args, cwd=folder, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@NCO
@pytest.mark.timeout(300)
def test_concat_and_time_mean_equal_ncrcat_and_ncra(work, mpitools) -> None:
    (work / "job.toml").write_text(JOB.format(combine="concat", output="series.nc"))
    (work / "mean.toml").write_text(JOB.format(combine="concat", output="mean.nc") + MEAN)
    for job in ("job.toml", "mean.toml"):
        cmd = ["mpirun", "-n", "2", sys.executable, "-m", "mpi4py", "-m", "h5par", "run", job]
        done = mpitools.launch(cmd, cwd=work, env=mpitools.mpi_env())
        assert done.returncode == 0, done.stderr
    nco(work, "ncrcat", "-O", *(f"snap_{k}.nc" for k in range(4)), "ncrcat.nc")
    nco(work, "ncra", "-O", *(f"snap_{k}.nc" for k in range(4)), "ncra.nc")
    with netCDF4.Dataset(work / "series.nc") as ours, netCDF4.Dataset(work / "ncrcat.nc") as theirs:
        for name in ("T", "time", "topo", "lat"):
            assert ours[name][:].tobytes() == theirs[name][:].tobytes(), name
        assert (
            ours["T"].dimensions == ("time", "lat", "lon") and ours.dimensions["time"].isunlimited()
        )
        assert ours["T"].units == "K" and ours.history.endswith("written by the model, dump 0")
    with netCDF4.Dataset(work / "mean.nc") as ours, netCDF4.Dataset(work / "ncra.nc") as theirs:
        assert ours["T"].dimensions == ("lat", "lon")
        np.testing.assert_allclose(ours["T"][:], theirs["T"][0], rtol=1e-6)  # ncra: float32
        np.testing.assert_allclose(ours["T"][:], data(work, "T").astype("f8").mean(0), rtol=1e-12)
    header = subprocess.run(["ncdump", "-h", "series.nc"], cwd=work, capture_output=True, text=True)
    assert "time = UNLIMITED ; // (10 currently)" in header.stdout, header.stdout


@NCO
@pytest.mark.timeout(300)
def test_ensemble_mean_equals_nces(tmp_path, mpitools) -> None:
    write_dumps(tmp_path, lengths=(3, 3, 3))
    job = JOB.format(combine="stack", output="ensmean.nc") + MEAN
    (tmp_path / "job.toml").write_text(job)
    done = mpitools.h5par_run(tmp_path, 3)
    assert done.returncode == 0, done.stderr
    nco(tmp_path, "nces", "-O", "snap_0.nc", "snap_1.nc", "snap_2.nc", "nces.nc")
    with (
        netCDF4.Dataset(tmp_path / "ensmean.nc") as ours,
        netCDF4.Dataset(tmp_path / "nces.nc") as theirs,
    ):
        assert ours["T"].dimensions == ("time", "lat", "lon")
        np.testing.assert_allclose(ours["T"][:], theirs["T"][:], rtol=1e-6)
    want = data(tmp_path, "T", how=np.stack).astype("f8").mean(0)
    with h5py.File(tmp_path / "ensmean.nc") as f:
        np.testing.assert_allclose(f["T"][...], want, rtol=1e-12)


@pytest.mark.timeout(300)
def test_a_virtual_series_maps_the_files_and_consolidates(work, mpitools) -> None:
    job = JOB.format(combine="concat", output="virtual.nc").replace(
        "[run]", 'layout = "virtual"\n[run]'
    )
    (work / "job.toml").write_text(job)
    done = mpitools.h5par_run(work, 2)
    assert done.returncode == 0, done.stderr
    with h5py.File(work / "virtual.nc") as f:
        assert f["T"].is_virtual and f["T"][...].tobytes() == data(work, "T").tobytes()
        assert {s.file_name for s in f["T"].virtual_sources()} == {f"snap_{k}.nc" for k in range(4)}
    dump = subprocess.run(
        ["h5dump", "-d", "/time", "virtual.nc"], cwd=work, capture_output=True, text=True
    )
    assert dump.returncode == 0 and "(0): 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in dump.stdout, dump.stdout
    with netCDF4.Dataset(work / "virtual.nc") as d:
        assert d["time"][:].tolist() == list(range(10)) and d.dimensions["time"].isunlimited()
    cons = mpitools.launch(
        [sys.executable, "-m", "h5par", "consolidate", "virtual.nc", "plain.nc"], cwd=work,
        env=mpitools.mpi_env(),
    )  # fmt: skip
    assert cons.returncode == 0, cons.stderr
    with h5py.File(work / "plain.nc") as f:
        assert not f["T"].is_virtual and f["T"][...].tobytes() == data(work, "T").tobytes()
    assert not list(work.glob(".*h5par*")), list(work.iterdir())


def _broken(work: Path, what: str) -> str:
    """Break the dumps in ``work`` one way; returns the job text to run."""
    job = JOB.format(combine="concat", output="out.nc")
    with h5py.File(work / "snap_2.nc", "r+") as f:
        if what == "missing":
            del f["topo"], f["T"]
        elif what == "shape":
            del f["T"]
            f["T"] = np.zeros((4, 9, 5), "f4")
        elif what == "dtype":
            del f["T"]
            f["T"] = np.zeros((4, *GRID), "f8")
        elif what == "duplicate":
            f["time"][0] = 0.0
    if what in ("duplicate", "order_missing"):
        name = "time" if what == "duplicate" else "t"
        return job.replace('combine = "concat"', f'combine = "concat"\norder_by = "/{name}"')
    changes = {
        "combine": ('"concat"', '"merge"'),
        "in_place": ('path = "out.nc"', "in_place = true"),
        "virtual": ("[run]", 'layout = "virtual"\n[run]'),
        "axis": ('combine = "concat"', 'combine = "stack"\naxis = 1'),
        "pattern": ('path = "out.nc"', 'path = "{stem}.nc"'),
    }
    job = job.replace(*changes[what]) if what in changes else job
    return job + MEAN if what == "virtual" else job


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("missing", r"dataset /T is missing from '.*snap_2.nc' \(it is in '.*snap_0.nc'\)"),
        ("shape", r"dataset /T: shape \(4, 9, 5\) in '.*snap_2.nc', \(3, 9, 11\) in '.*snap_0.nc' \(valid: the same shape in every file but along axis 0\)"),
        ("dtype", r"dataset /T: dtype float64 in '.*snap_2.nc' but float32 in '.*snap_0.nc'"),
        ("duplicate", r"input.order_by = '/time': '.*snap_0.nc' and '.*snap_2.nc' both start at 0.0"),
        ("order_missing", r"input.order_by = '/t': '.*snap_0.nc' has no such dataset of numbers"),
        ("combine", r"input.combine = 'merge' \(valid: concat, stack\)"),
        ("in_place", r"input.combine makes one new file: give output.path, not in_place"),
        ("virtual", r"output.layout = 'virtual' maps the inputs: it cannot apply kernels"),
        ("axis", r"input.axis applies to combine = 'concat'"),
        ("pattern", r"output.path = '\{stem\}.nc': a series makes one file"),
    ],
)  # fmt: skip
def test_problems_are_one_line_with_exit_2_found_by_plan(work, mpitools, what, message) -> None:
    (work / "job.toml").write_text(_broken(work, what))
    mpitools.refused(work, message)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("stop", "resume"), [(2, 1), (1, 3)])
def test_a_stopped_series_resumes_on_another_rank_count(work, mpitools, stop, resume) -> None:
    (work / "job.toml").write_text(
        JOB.format(combine="concat", output="out.nc") + MEAN.replace('"mean"', '"max"')
    )

    def command(n: int, *extra: str) -> list[str]:
        return mpitools.cli_command(n, "run", "job.toml", *extra)

    env = mpitools.mpi_env({"H5PAR_FAULT": "write:0:term:3"})
    stopped = mpitools.launch(command(stop), cwd=work, env=env, timeout=120)
    assert stopped.returncode == 75, stopped.stdout + stopped.stderr
    assert len(list(work.glob(".out.nc.h5par-series-*.h5"))) == 1  # kept for the resume
    resumed = mpitools.launch(command(resume, "--resume"), cwd=work, env=mpitools.mpi_env())
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed:" in resumed.stdout, resumed.stdout
    with h5py.File(work / "out.nc") as g:
        assert g["T"][...].tobytes() == data(work, "T").max(0).tobytes()
    assert not list(work.glob(".*h5par*"))


@pytest.mark.timeout(300)
def test_a_rerun_skips_the_series_until_a_file_changes(work, mpitools) -> None:
    (work / "job.toml").write_text(JOB.format(combine="concat", output="out.nc"))
    assert mpitools.h5par_run(work, 2).returncode == 0
    again = mpitools.h5par_run(work, 2, "--verbose")
    assert again.returncode == 0 and "1 skipped" in again.stdout, again.stdout
    assert "4 file(s) concat (snap_0.nc ... snap_3.nc) -> out.nc" in again.stdout, again.stdout
    with netCDF4.Dataset(work / "snap_3.nc", "a") as d:  # one more time step in the last dump
        d["time"][1] = 11.0
        d["T"][1] = np.ones(GRID, "f4")
    changed = mpitools.h5par_run(work, 2)
    assert changed.returncode == 2 and "exists" in changed.stderr, changed.stderr
    assert mpitools.h5par_run(work, 2, "--overwrite").returncode == 0
    with h5py.File(work / "out.nc") as g:
        assert g["T"].shape == (11, *GRID) and g["T"][...].tobytes() == data(work, "T").tobytes()
    assert not list(work.glob(".*h5par*"))


@pytest.mark.timeout(300)
def test_two_hundred_small_files_concat_on_two_ranks(tmp_path, mpitools) -> None:
    rng = np.random.default_rng(2)
    parts = [rng.normal(size=(1 + k % 3, 6)) for k in range(200)]
    for k, part in enumerate(parts):
        with h5py.File(tmp_path / f"d{k}.h5", "w") as f:
            f["x"] = part
    (tmp_path / "job.toml").write_text(
        '[input]\npath = "d*.h5"\ncombine = "concat"\n[output]\npath = "all.h5"\n'
    )
    done = mpitools.h5par_run(tmp_path, 2)
    assert done.returncode == 0, done.stderr
    with h5py.File(tmp_path / "all.h5") as f:
        assert f["x"][...].tobytes() == np.concatenate(parts).tobytes()
    assert os.listdir(tmp_path).count("all.h5") == 1 and not list(tmp_path.glob(".*h5par*"))


@pytest.mark.timeout(300)
def test_a_second_run_of_a_running_series_is_refused_and_the_first_ends_as_alone(
    work, mpitools
) -> None:
    (work / "job.toml").write_text(JOB.format(combine="concat", output="out.nc") + MEAN)
    env = mpitools.mpi_env({"H5PAR_FAULT": "write:*:delay=0.3"})
    first = mpitools.background(mpitools.cli_command(2, "run", "job.toml"), work, env)
    deadline = time.monotonic() + 60
    while not (work / ".out.nc.h5par" / "journal.json").is_file():
        assert time.monotonic() < deadline and first.poll() is None, "the first run never worked"
        time.sleep(0.05)
    second = mpitools.launch(mpitools.cli_command(1, "run", "job.toml"), work, mpitools.mpi_env())
    assert second.returncode == 2 and "another h5par run is working" in second.stderr
    code, out, err = mpitools.finish(first, 240)
    assert code == 0, out + err
    with h5py.File(work / "out.nc") as g:
        assert np.allclose(g["T"][...], data(work, "T").astype("f8").mean(0), rtol=1e-12)
    assert not list(work.glob(".*h5par*"))
