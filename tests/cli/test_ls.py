"""`h5par ls` lists groups, datasets, attributes and links, for every corpus file; it names
what is wrong with a file it cannot list; a reader closing the pipe early is no error."""

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from h5par.core.sizes import format_size


def test_ls_shows_tree_attributes_and_links(run_python, tmp_path) -> None:
    path = tmp_path / "weather.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset(
            "15/temperature",
            data=np.zeros((100, 4)),
            chunks=(10, 4),
            compression="gzip",
            fillvalue=-1.0,
        )
        d.attrs["dt"] = 10.0
        f["link"] = h5py.SoftLink("/15/temperature")
        f["ext"] = h5py.ExternalLink("other.h5", "/x")
        f["alias"] = f["15"]
    result = run_python(["-m", "h5par", "ls", str(path)])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert (
        "/15/temperature  dataset float64[100, 4]  chunks=(10, 4)  filters=deflate(4)  stored="
        in out
    )
    assert "  fill=-1.0  (1 attribute)" in out
    assert "@dt = 10.0" in out
    assert (
        "/link  soft link -> /15/temperature" in out and "/ext  external link -> other.h5:/x" in out
    )
    assert "same object as /15" in out


def test_ls_reads_every_corpus_file(run_python, real_data) -> None:
    manifest = json.loads((real_data / "MANIFEST.json").read_text())
    for entry in manifest["files"]:
        if entry["role"] in ("hdf5", "partially-readable"):
            result = run_python(["-m", "h5par", "ls", str(real_data / entry["file"])])
            assert result.returncode == 0, (entry["file"], result.stderr)
        elif entry["role"] == "bad-input":
            result = run_python(["-m", "h5par", "ls", str(real_data / entry["file"])])
            # Not HDF5 at all: one error line. HDF5 with a broken object: listed as unreadable.
            one_line = result.returncode == 2 and result.stderr.count("\n") == 1
            assert one_line or (result.returncode == 0 and "unreadable object" in result.stdout), (
                result.stderr
            )


def test_ls_names_a_missing_file_and_a_netcdf3_file(run_python, tmp_path) -> None:
    gone = run_python(["-m", "h5par", "ls", str(tmp_path / "gone.h5")])
    assert gone.returncode == 2 and gone.stderr.count("\n") == 1, gone.stderr
    assert "gone.h5': no such file" in gone.stderr and "corrupt" not in gone.stderr
    for version, kind in ((1, "classic"), (2, "64-bit offset")):
        old = tmp_path / f"old{version}.nc"
        old.write_bytes(b"CDF" + bytes([version]) + bytes(28))
        listed = run_python(["-m", "h5par", "ls", str(old)])
        assert listed.returncode == 2 and listed.stderr.count("\n") == 1, listed.stderr
        assert f"is a netCDF-3 file ({kind} format)" in listed.stderr
        assert f"`nccopy -k nc4 {old} {tmp_path / f'old{version}_nc4.nc'}`" in listed.stderr


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Path:
    """A file whose listing, plan and run summary each fill a pipe several times over."""
    folder = tmp_path_factory.mktemp("many")
    with h5py.File(folder / "many.h5", "w") as f:
        for i in range(1500):
            name = f"station_{i:05d}_with_a_rather_long_name/temperature_at_two_metres"
            f[name] = np.arange(3.0)
            f[name].attrs["units"] = "degrees Celsius, measured at two metres above the ground"
    (folder / "job.toml").write_text(
        'version = 1\n[input]\npath = "many.h5"\n[output]\npath = "out.h5"\noverwrite = true\n'
        '[[kernels]]\nname = "reduce"\nop = ["min", "max"]\n'
    )
    return folder


@pytest.mark.parametrize(
    "verb",
    [["ls", "many.h5"], ["plan", "job.toml"], ["run", "job.toml", "--quiet", "--report", "r.json"]],
    ids=["ls", "plan", "run"],
)
def test_a_reader_that_stops_early_ends_the_output_quietly(many, verb) -> None:
    """``h5par ls FILE | head -1``: exit status 0, no BrokenPipeError, a report still written."""
    (many / "r.json").unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "h5par", *verb]
    with subprocess.Popen(cmd, cwd=many, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # as head -1 does
        err = proc.stderr.read().decode()
        status = proc.wait(timeout=120)
    assert first and status == 0 and err == "", err
    if verb[0] == "run":
        assert len(json.loads((many / "r.json").read_text())["files"][0]["reductions"]) == 1500


def test_ls_of_a_netcdf_file_reads_like_ncdump_h(run_python, tmp_path) -> None:
    """Dimensions with their lengths, T(time, z, y, x), one dtype spelling, deflate level and
    stored size; netCDF's and the dimension scales' own attributes and the dimension-only
    placeholder /z only with --all (issue 22, item 9)."""
    helper = str(Path(__file__).with_name("foreign_tools.py"))
    written = run_python([helper, "write-climate", str(tmp_path / "c.nc")])
    assert written.returncode == 0, written.stderr
    done = run_python(["-m", "h5par", "ls", str(tmp_path / "c.nc")])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:5] == [
        "dimensions:",
        "  time = 3 (unlimited)     /time",
        "  x = 8                    /x",
        "  y = 6                    /y",
        "  z = 4                    /z  (dimension only)",
    ]
    (t_line,) = [line for line in lines if line.startswith("/T")]
    assert t_line.startswith("/T(time, z, y, x)  dataset float64[3, 4, 6, 8]  chunks=(1, 4, 6, 8)")
    assert "filters=shuffle,deflate(4)" in t_line and "  stored=" in t_line
    with h5py.File(tmp_path / "c.nc") as f:
        stored = f["T"].id.get_storage_size()
    assert f"  stored={format_size(stored)}  " in t_line
    assert any(line.startswith("/time(time)  dataset float64[3]") for line in lines)
    hidden = ("CLASS", "NAME", "DIMENSION_LIST", "REFERENCE_LIST", "_Netcdf4", "_NCProperties")
    assert not any(word in done.stdout for word in hidden), done.stdout
    assert not any(line.startswith("/z") for line in lines)
    full = run_python(["-m", "h5par", "ls", "--all", str(tmp_path / "c.nc")])
    assert full.returncode == 0, full.stderr
    assert all(word in full.stdout for word in hidden[:5]), full.stdout
    assert any(line.startswith("/z(z)  dataset") for line in full.stdout.splitlines())
