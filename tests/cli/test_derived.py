"""Derived datasets through `h5par run` and `plan` on netCDF-4 files (issue 19): what
netCDF tools and NCO's ncap2 see, a dropping output that keeps the coordinates, every
problem one line with exit 2 before anything is written, and a stop resumed on another
rank count.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

netCDF4 = pytest.importorskip("netCDF4")  # noqa: N816 (the module's own name)

SHAPE = (12, 30, 20)  # netCDF chunks each time step: 12 units
FILL = np.float32(-999.0)
JOB = """[input]
path = "in.nc"
datasets = []
[output]
path = "out.nc"
{output}
[[derived]]
path = "/speed"
expression = "sqrt(u**2 + v**2)"
inputs = {{ u = "/u", v = "/v" }}
attrs = {{ units = "m s-1" }}
[run]
memory = "8KiB"
file_parallel_below = 0
"""


@pytest.fixture
def work(tmp_path) -> Path:
    rng = np.random.default_rng(3)
    with netCDF4.Dataset(tmp_path / "in.nc", "w") as d:
        d.createDimension("time", None)
        for name, n in zip(("y", "x"), SHAPE[1:], strict=True):
            d.createDimension(name, n)
            d.createVariable(name, "f4", (name,))[:] = np.arange(n)
        d.createVariable("time", "f8", ("time",))[:] = np.arange(SHAPE[0])
        for name in ("u", "v"):
            v = d.createVariable(name, "f4", ("time", "y", "x"), fill_value=FILL, zlib=True)
            data = rng.normal(size=SHAPE).astype("f4")
            data[1, 3:5, 7] = FILL
            v.set_auto_mask(False)
            v[:] = data
    return tmp_path


def arrays(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(folder / "in.nc") as f:
        return f["u"][...], f["v"][...]


def speed_of(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    speed = np.sqrt(u**2 + v**2)
    speed[(u == FILL) | (v == FILL)] = FILL
    return speed


@pytest.mark.timeout(300)
@pytest.mark.parametrize("unselected", ["copy", "drop"])
def test_netcdf_tools_read_the_derived_variable_with_its_dimensions(
    work, mpitools, unselected
) -> None:
    (work / "job.toml").write_text(JOB.format(output=f'unselected = "{unselected}"'))
    done = mpitools.h5par_run(work, 2)
    assert done.returncode == 0, done.stderr
    u, v = arrays(work)
    with h5py.File(work / "out.nc") as g:
        assert g["speed"][...].tobytes() == speed_of(u, v).tobytes()
        assert ("u" in g) == (unselected == "copy")
    header = subprocess.run(
        ["ncdump", "-h", str(work / "out.nc")], capture_output=True, text=True, check=True
    ).stdout
    assert "float speed(time, y, x) ;" in header, header
    assert 'speed:units = "m s-1" ;' in header and "speed:_FillValue = -999.f ;" in header
    with netCDF4.Dataset(work / "out.nc") as d:
        assert d["speed"].dimensions == ("time", "y", "x")
        assert d["x"][:].tolist() == list(range(SHAPE[2]))
        assert np.ma.count_masked(d["speed"][:]) == 2  # the missing elements are masked


@pytest.mark.timeout(300)
@pytest.mark.skipif(shutil.which("ncap2") is None, reason="NCO's ncap2 is not installed")
def test_the_same_values_as_ncap2(work, mpitools) -> None:
    (work / "job.toml").write_text(JOB.format(output=""))
    assert mpitools.h5par_run(work, 2).returncode == 0
    nco = subprocess.run(
        ["ncap2", "-O", "-s", "speed=sqrt(u*u+v*v)", "in.nc", "nco.nc"],
        cwd=work, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert nco.returncode == 0, nco.stderr
    with netCDF4.Dataset(work / "out.nc") as ours, netCDF4.Dataset(work / "nco.nc") as theirs:
        a, b = ours["speed"][:], theirs["speed"][:]
        assert np.array_equal(np.ma.getmaskarray(a), np.ma.getmaskarray(b))
        np.testing.assert_allclose(a.compressed(), b.compressed(), rtol=2e-7)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("/v", "/time"), r"derived /speed: inputs u \(shape \(12, 30, 20\)\) and v \(shape \(12,\)\) do not broadcast"),
        (("u**2 + v**2", "u**2 + w"), r"expression 'sqrt\(u\*\*2 \+ w\)': unknown name 'w'"),
        (('path = "/speed"', 'path = "/u"'), r"derived /u: the output already has /u \(valid: a new path\)"),
        (('v = "/v"', 'v = "ref.nc:/v"'), r"derived /speed: inputs.v: no such file '.*ref.nc'"),
        (('v = "/v"', 'v = "/w"'), r"derived /speed: input v: /w is not a dataset of the input"),
        (('path = "out.nc"', "in_place = true"), r"derived datasets need an output file"),
        (("[run]", '[output.attrs]\n"/speed" = { a = 1 }\n[run]'), r'output.attrs: "/speed" is a derived dataset \(valid: set its attributes in its \[\[derived\]\] table'),
    ],
)  # fmt: skip
def test_problems_are_one_line_with_exit_2_found_by_plan(work, mpitools, change, message) -> None:
    (work / "job.toml").write_text(JOB.format(output="").replace(*change))
    mpitools.refused(work, message)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("stop", "resume"), [(2, 1), (1, 3)])
def test_a_stopped_derived_job_resumes_on_another_rank_count(work, mpitools, stop, resume) -> None:
    (work / "job.toml").write_text(JOB.format(output=""))

    def command(n: int, *extra: str) -> list[str]:
        return mpitools.cli_command(n, "run", "job.toml", *extra)

    env = mpitools.mpi_env({"H5PAR_FAULT": "write:0:term:3"})
    stopped = mpitools.launch(command(stop), cwd=work, env=env, timeout=120)
    assert stopped.returncode == 75, stopped.stdout + stopped.stderr
    resumed = mpitools.launch(command(resume, "--resume"), cwd=work, env=mpitools.mpi_env())
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed:" in resumed.stdout, resumed.stdout
    u, v = arrays(work)
    with h5py.File(work / "out.nc") as g:
        assert g["speed"][...].tobytes() == speed_of(u, v).tobytes()


@pytest.mark.timeout(300)
def test_a_mask_stored_as_int16_in_a_new_group_with_its_attributes(work, mpitools) -> None:
    job = (
        JOB.format(output='unselected = "drop"')
        .replace('expression = "sqrt(u**2 + v**2)"', 'expression = "u > v"\ndtype = "int16"')
        .replace('path = "/speed"', 'path = "/masks/faster"')
    )
    job += '[output.attrs]\n"/masks" = { comment = "u beats v" }\n'
    (work / "job.toml").write_text(job)
    done = mpitools.h5par_run(work, 2)
    assert done.returncode == 0, done.stderr
    u, v = arrays(work)
    with h5py.File(work / "out.nc") as g:
        want = (u > v).astype("i2")
        want[(u == FILL) | (v == FILL)] = -999  # missing stays missing, in the stored dtype
        assert g["masks/faster"][...].tobytes() == want.tobytes()
        assert g["masks/faster"].attrs["_FillValue"] == -999
        assert g["masks"].attrs["comment"] == b"u beats v"
