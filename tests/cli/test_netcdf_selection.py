"""Selections that netCDF tools read (issue 22, item 1) and outputs that drop what is not
selected (item 5).

netCDF-4 files written at test time by netCDF4-python go through ``mpirun -n N h5par run``;
netCDF4-python reads the outputs (in its own process: it brings its own HDF5) and compares
them bitwise with numpy on the selection, ``ncdump`` and NCO's ``ncks`` read them whole when
installed, and h5py checks that ``DIMENSION_LIST``, ``REFERENCE_LIST`` and netCDF's
``_Netcdf4Dimid``/``_Netcdf4Coordinates`` agree.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

HELPER = str(Path(__file__).with_name("foreign_tools.py"))
DIMS = ["time", "z", "y", "x"]


def write_job(folder: Path, select: dict[str, str], output: str = "", datasets: str = "") -> None:
    """A job copying ``in.nc`` to ``out.nc`` through ``select`` (no kernel)."""
    lines = ["version = 1", "[input]", 'path = "in.nc"', datasets, "[input.select]"]
    lines += [f'"{name}" = "{text}"' for name, text in select.items()]
    lines += ["[output]", 'path = "out.nc"', output]
    (folder / "job.toml").write_text("\n".join(lines) + "\n")


def climate(run_python, folder: Path, *args: str) -> None:
    written = run_python([HELPER, "write-climate", str(folder / "in.nc"), *args])
    assert written.returncode == 0, written.stderr


def run(mpitools, folder: Path, nranks: int) -> None:
    ran = mpitools.h5par_run(folder, nranks, "--quiet")
    assert ran.returncode == 0, ran.stderr


def check_netcdf4(run_python, folder: Path, expected: dict[str, Any]) -> None:
    """netCDF4-python reads ``out.nc`` as ``expected`` says (foreign_tools.check_selection)."""
    files = [str(folder / "in.nc"), str(folder / "out.nc")]
    checked = run_python([HELPER, "check-selection", *files, json.dumps(expected)])
    assert checked.returncode == 0, checked.stdout + checked.stderr


def check_tools(path: Path, *declarations: str) -> None:
    """``ncdump`` dumps ``path`` whole and declares ``declarations``; ``ncks`` reads it.

    Each tool that is not installed is left out.
    """
    if shutil.which("ncdump") is not None:
        done = subprocess.run(["ncdump", str(path)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        for line in declarations:
            assert line in done.stdout, (line, done.stdout[:2000])
    if shutil.which("ncks") is not None:
        done = subprocess.run(
            ["ncks", "-H", str(path)], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr


def check_scales(path: Path) -> None:
    """Every attached scale has its axis's length, lists its users, and netCDF's ids agree."""
    with h5py.File(path, "r") as f:
        for name, dset in _datasets(f):
            if "DIMENSION_LIST" not in dset.attrs:
                continue
            ids = []
            for axis, refs in enumerate(dset.attrs["DIMENSION_LIST"]):
                assert len(refs) == 1, (name, axis)
                scale = f[refs[0]]
                assert scale.shape == (dset.shape[axis],), (name, axis, scale.name)
                users = [(f[r].name, int(k)) for r, k in scale.attrs["REFERENCE_LIST"]]
                assert (name, axis) in users, (name, axis, scale.name, users)
                ids.append(int(scale.attrs["_Netcdf4Dimid"]))
            assert list(dset.attrs["_Netcdf4Coordinates"]) == ids, name
        dimids = [int(d.attrs["_Netcdf4Dimid"]) for _, d in _datasets(f) if d.is_scale]
        assert len(set(dimids)) == len(dimids), dimids


def _datasets(f: h5py.File) -> list[tuple[str, h5py.Dataset]]:
    found: list[tuple[str, h5py.Dataset]] = []
    f.visititems(lambda n, o: found.append(("/" + n, o)) if isinstance(o, h5py.Dataset) else None)
    return found


@pytest.mark.parametrize("nranks", [1, 2, 3])
def test_a_selection_gets_dimensions_of_the_selected_length(
    run_python, mpitools, tmp_path, nranks
) -> None:
    climate(run_python, tmp_path)
    write_job(tmp_path, {"/T": ":, 1:3, 1:6:2, :"})
    run(mpitools, tmp_path, nranks)
    expected = {
        "variables": {
            "T": [":, 1:3, 1:6:2, :", ["time", "z_1", "y_1", "x"]],
            "u": [None, DIMS],
        },
        "coordinates": {"y_1": ["y", "1:6:2"], "y": ["y", ":"], "x": ["x", ":"]},
        "unlimited": ["time"],
    }
    check_netcdf4(run_python, tmp_path, expected)
    check_tools(tmp_path / "out.nc", "double T(time, z_1, y_1, x) ;", "y_1 = 3 ;", "z_1 = 2 ;")
    check_scales(tmp_path / "out.nc")
    with h5py.File(tmp_path / "out.nc", "r") as f:  # the placeholder says its new length
        assert f["z_1"].attrs["NAME"].decode().endswith("         2")


@pytest.mark.parametrize("nranks", [2, 3])
def test_variables_selected_alike_share_the_sliced_dimension(
    run_python, mpitools, tmp_path, nranks
) -> None:
    climate(run_python, tmp_path)
    write_job(tmp_path, {"/T": ":, :, 2:5, ::3", "/u": ":, :, 2:5, ::3"})
    run(mpitools, tmp_path, nranks)
    expected = {
        "variables": {"T": [":, :, 2:5, ::3", DIMS], "u": [":, :, 2:5, ::3", DIMS]},
        "coordinates": {"y": ["y", "2:5"], "x": ["x", "::3"], "time": ["time", ":"]},
        "only": ["T", "u", "time", "x", "y"],
    }
    check_netcdf4(run_python, tmp_path, expected)
    check_tools(tmp_path / "out.nc", "double u(time, z, y, x) ;", "y = 3 ;", "x = 3 ;")
    check_scales(tmp_path / "out.nc")


@pytest.mark.parametrize("nranks", [1, 3])
def test_variables_selected_differently_get_a_dimension_each(
    run_python, mpitools, tmp_path, nranks
) -> None:
    climate(run_python, tmp_path)
    write_job(tmp_path, {"/T": "0, :, [0, 2, 5], 2:8", "/u": ":, :, 1:6:2, 2:8"})
    run(mpitools, tmp_path, nranks)
    expected = {
        "variables": {
            "T": ["0, :, [0, 2, 5], 2:8", ["z", "y_1", "x"]],
            "u": [":, :, 1:6:2, 2:8", ["time", "z", "y_2", "x"]],
        },
        "coordinates": {"y_1": ["y", "[0, 2, 5]"], "y_2": ["y", "1:6:2"], "x": ["x", "2:8"]},
    }
    check_netcdf4(run_python, tmp_path, expected)
    check_tools(tmp_path / "out.nc", "double T(z, y_1, x) ;", "double u(time, z, y_2, x) ;")
    check_scales(tmp_path / "out.nc")


def test_a_selected_record_dimension_stays_unlimited(run_python, mpitools, tmp_path) -> None:
    climate(run_python, tmp_path)
    write_job(tmp_path, {"/T": "1:3"})
    run(mpitools, tmp_path, 2)
    expected = {
        "variables": {"T": ["1:3", ["time_1", "z", "y", "x"]], "u": [None, DIMS]},
        "coordinates": {"time_1": ["time", "1:3"], "time": ["time", ":"]},
        "unlimited": ["time", "time_1"],
    }
    check_netcdf4(run_python, tmp_path, expected)
    check_tools(tmp_path / "out.nc", "time_1 = UNLIMITED ; // (2 currently)")
    check_scales(tmp_path / "out.nc")


@pytest.mark.parametrize("nranks", [1, 2, 3])
def test_drop_writes_the_selection_and_its_dimensions_only(
    run_python, mpitools, tmp_path, nranks
) -> None:
    climate(run_python, tmp_path, "1,16,128,128", "T", "u", "v")
    write_job(tmp_path, {"/T": ":, 0:4, 32:96, 32:96"}, 'unselected = "drop"', 'datasets = "/T"')
    run(mpitools, tmp_path, nranks)
    expected = {
        "variables": {"T": [":, 0:4, 32:96, 32:96", DIMS]},
        "coordinates": {"y": ["y", "32:96"], "x": ["x", "32:96"], "time": ["time", ":"]},
        "only": ["T", "time", "x", "y"],
    }
    check_netcdf4(run_python, tmp_path, expected)
    check_tools(tmp_path / "out.nc", "double T(time, z, y, x) ;", "z = 4 ;", "y = 64 ;")
    check_scales(tmp_path / "out.nc")
    size, whole = (tmp_path / "out.nc").stat().st_size, (tmp_path / "in.nc").stat().st_size
    assert size < whole / 20, (size, whole)  # 3 x 2 MiB of float64 in, 128 KiB of T out


def test_drop_without_a_selection_is_ncks_v(run_python, mpitools, tmp_path) -> None:
    climate(run_python, tmp_path)
    write_job(tmp_path, {}, 'unselected = "drop"', 'datasets = ["/u"]')
    run(mpitools, tmp_path, 2)
    expected = {
        "variables": {"u": [None, DIMS]},
        "coordinates": {"y": ["y", ":"], "x": ["x", ":"], "time": ["time", ":"]},
        "only": ["u", "time", "x", "y"],
    }
    check_netcdf4(run_python, tmp_path, expected)
    check_tools(tmp_path / "out.nc", "double u(time, z, y, x) ;", "z = 4 ;")
    check_scales(tmp_path / "out.nc")


DROP = """
import sys, h5par
options = h5par.OutputOptions(unselected="drop")
h5par.apply(sys.argv[1], sys.argv[2], [{"name": "abs"}], datasets=["/run/a/field"],
            options=options, memory="4KiB")
"""


def test_drop_from_python_keeps_the_groups_on_the_path(run_mpi, tmp_path) -> None:
    src, out = tmp_path / "in.h5", tmp_path / "out.h5"
    field = np.linspace(-3, 3, 600).reshape(20, 30)
    with h5py.File(src, "w") as f:
        f.attrs["title"] = "top"
        f.create_group("run/a").attrs["kind"] = "kept"
        f["run"].attrs["step"] = 7
        f["run/a/field"] = field
        f["run/a/other"] = np.zeros(1000)
        f["run/b/big"] = np.zeros(2**20)
        f["link"] = h5py.SoftLink("/run/b/big")
    ran = run_mpi(2, ["-c", DROP, str(src), str(out)])
    assert ran.returncode == 0, ran.stderr
    with h5py.File(out, "r") as f:
        names: list[str] = []
        f.visit(names.append)
        assert sorted(names) == ["run", "run/a", "run/a/field"]
        assert f.attrs["title"] == "top" and f["run"].attrs["step"] == 7
        assert f["run/a"].attrs["kind"] == "kept"
        assert f["run/a/field"][...].tobytes() == np.abs(field).tobytes()
    assert out.stat().st_size < src.stat().st_size / 20


@pytest.mark.parametrize(
    ("output", "expect"),
    [
        ('path = "out.nc"\nunselected = "keep"', "output.unselected = 'keep' (valid: copy, drop)"),
        ('in_place = true\nunselected = "drop"', "output.unselected = 'drop' needs an output file"),
    ],
)
def test_a_bad_unselected_is_a_usage_error(run_python, tmp_path, output, expect) -> None:
    climate(run_python, tmp_path)
    (tmp_path / "job.toml").write_text(
        f'version = 1\n[input]\npath = "in.nc"\n[output]\n{output}\n'
    )
    for verb in ("run", "plan"):
        done = run_python(["-m", "h5par", verb, "job.toml"], cwd=tmp_path)
        errors = [line for line in done.stderr.splitlines() if line.startswith("h5par: error:")]
        assert done.returncode == 2 and len(errors) == 1, done.stderr
        assert expect in errors[0], errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nc", "job.toml"]
