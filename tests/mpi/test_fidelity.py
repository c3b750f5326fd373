"""Whole-file fidelity: every corpus file goes through an identity job and h5diff finds no
difference; a kernel on one dataset changes only that dataset (1-4 ranks).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
from mpi4py import MPI

import h5par

pytestmark = pytest.mark.mpi(min_size=1)
comm = MPI.COMM_WORLD

# Files h5par cannot reproduce exactly, and why (each asserted below).
USER_DEFINED_LINKS = {"hdf5-tools_tudlink.h5", "hdf5-tools_twithub.h5"}  # no API to recreate them
NO_H5DIFF_FILTER = {"hdf5-examples_h5ex_d_lzf.h5"}  # h5diff has no LZF plugin: compared with h5py
# `h5dump -H` headers match line for line (after the file name) except:
HEADER_EXCEPTIONS = {
    # Anonymous committed datatypes are printed by address ("#6632"); HDF5's object copy gives
    # each copied dataset its own copy of such a type at a new address.
    "hdf5-tools_tcompound.h5",
    "hdf5-tools_tenum.h5",
    # h5dump follows external links; their targets are named relative to the linking file, so
    # what they resolve to depends on the folder the output is written to.
    "hdf5-tools_extlink/textlinksrc.h5",
    "hdf5-tools_extlink/textlinktar.h5",
}


def corpus(real_data: Path, role: str) -> list[str]:
    manifest = json.loads((real_data / "MANIFEST.json").read_text())
    return [entry["file"] for entry in manifest["files"] if entry["role"] == role]


def out_dir(tmp_path_factory, name: str) -> Path:
    return Path(comm.bcast(str(tmp_path_factory.mktemp(name)) if comm.rank == 0 else None))


def header(path: Path, cwd: Path) -> list[str]:
    dump = subprocess.run(
        ["h5dump", "-H", str(path)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )
    return dump.stdout.splitlines()[1:]  # the first line names the file


def h5diff(src: Path, out: Path) -> subprocess.CompletedProcess[str]:
    # External raw-data files are named relative to the input: run from its folder.
    return subprocess.run(
        ["h5diff", "-c", str(src), str(out)],
        capture_output=True,
        text=True,
        cwd=src.parent,
        timeout=600,  # a loaded machine: h5diff -c of the big-dimension files is slow
        check=False,
    )


@pytest.mark.timeout(1200)  # h5diff of the whole corpus on a loaded machine
def test_identity_jobs_over_the_whole_corpus_are_h5diff_clean(real_data, tmp_path_factory) -> None:
    if comm.size > 3:
        pytest.skip("identity copies are built by rank 0 alone: 1-3 ranks cover them")
    folder = out_dir(tmp_path_factory, "identity")
    failures = {}
    for name in corpus(real_data, "hdf5"):
        src, out = real_data / name, folder / name.replace("/", "__")
        if name in USER_DEFINED_LINKS:
            with pytest.raises(h5par.UsageError, match="is a user-defined link"):
                h5par.apply(src, out)
            assert not out.exists()
            continue
        h5par.apply(src, out)
        if comm.rank == 0:
            try:  # a failure here must still reach the bcast below on every rank
                problem = identity_problem(name, src, out)
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem:
                failures[name] = problem
    assert comm.bcast(failures) == {}


def identity_problem(name: str, src: Path, out: Path) -> str | None:
    """What differs between a corpus file and its identity copy (rank 0), or None."""
    if name in NO_H5DIFF_FILTER:
        with h5py.File(src) as a, h5py.File(out) as b:
            same = all(np.array_equal(a[k][...], b[k][...]) for k in a)
        return None if same else "data differs"
    result = h5diff(src, out)
    if result.returncode != 0:
        return (result.stdout + result.stderr)[:300]
    if name not in HEADER_EXCEPTIONS and header(src, src.parent) != header(out, src.parent):
        return "h5dump -H headers differ"
    return None


def test_clip_on_one_netcdf_variable_changes_only_it(real_data, tmp_path_factory) -> None:
    src = real_data / "netcdf4py_20171025_2056.Cloud_Top_Height.nc"
    out = out_dir(tmp_path_factory, "nc") / "clipped.nc"
    h5par.apply(src, out, [{"name": "clip", "max": 1000}], datasets=["/HT"], memory="64KiB")
    problems = []
    if comm.rank == 0:
        diff = h5diff(src, out).stdout
        changed = {
            line.split("<")[1].split(">")[0]
            for line in diff.splitlines()
            if line.startswith("dataset:")
        }
        if changed != {"/HT"}:
            problems.append(f"h5diff saw changes in {changed}")
        with h5py.File(src) as a, h5py.File(out) as b:
            if b["HT"][...].tobytes() != np.clip(a["HT"][...], None, 1000).tobytes():
                problems.append("HT differs from numpy")
            for axis in range(2):  # dimension scales still attached, both ways
                scales = [s.name for s in b["HT"].dims[axis].values()]
                if scales != [s.name for s in a["HT"].dims[axis].values()]:
                    problems.append(f"dims[{axis}] = {scales}")
                for scale in b["HT"].dims[axis].values():
                    if not h5py.h5ds.is_attached(b["HT"].id, scale.id, axis):
                        problems.append(f"{scale.name} not attached")
    assert comm.bcast(problems) == []


@pytest.mark.parametrize("role", ["bad-input"])
def test_bad_inputs_give_one_clear_error(real_data, tmp_path_factory, role) -> None:
    folder = out_dir(tmp_path_factory, "bad")
    for name in corpus(real_data, role):
        with pytest.raises(h5par.H5ParError) as info:
            h5par.apply(real_data / name, folder / "out.h5", [{"name": "abs"}])
        assert "\n" not in str(info.value) and name.split("/")[-1] in str(info.value)
        assert not (folder / "out.h5").exists()


def test_large_untouched_datasets_are_copied_by_every_rank(tmp_path_factory, monkeypatch) -> None:
    from h5par.engine import inspection

    monkeypatch.setattr(inspection, "PARALLEL_COPY_BYTES", 4096)  # "large" at test scale
    folder = out_dir(tmp_path_factory, "pcopy")
    src, out = folder / "in.h5", folder / "out.h5"
    if comm.rank == 0:
        rng = np.random.default_rng(5)
        with h5py.File(src, "w") as f:
            f.create_dataset(
                "big/gz",
                data=rng.normal(size=(300, 40)),
                chunks=(16, 40),
                compression="gzip",
                shuffle=True,
                fletcher32=True,
            )
            f.create_dataset("big/be", data=rng.integers(0, 1000, size=(257, 33)).astype(">i8"))
            f["big/be"].attrs["units"] = "counts"
            f.create_dataset(
                "big/scaled", data=rng.normal(size=(100, 50)), chunks=(10, 50), scaleoffset=2
            )
            f["small"] = np.arange(10.0) - 5
    comm.Barrier()
    result = h5par.apply(src, out, [{"name": "abs"}], datasets=["/small"], memory="16KiB")
    assert result.datasets == ["/small"]
    assert all(n > 0 for n in result.bytes_written)  # every rank wrote part of the copies
    ok = True
    if comm.rank == 0:
        diff = h5diff(src, out).stdout
        ok = [line.split()[1] for line in diff.splitlines() if line.startswith("dataset:")] == [
            "</small>"
        ]
        with h5py.File(out) as f:
            ok = (
                ok
                and f["big/gz"].compression == "gzip"
                and f["big/gz"].fletcher32
                and f["big/be"].dtype == np.dtype(">i8")
            )
    assert comm.bcast(ok)


def test_sparse_datasets_stay_sparse(real_data, tmp_path_factory, monkeypatch) -> None:
    from h5par.engine import inspection

    monkeypatch.setattr(inspection, "PARALLEL_COPY_BYTES", 4096)
    src = real_data / "hdf5-tools_tbigdims.h5"  # a 4 GiB logical dataset, almost nothing stored
    out = out_dir(tmp_path_factory, "sparse") / "out.h5"
    h5par.apply(src, out)
    ok = True
    if comm.rank == 0:
        ok = out.stat().st_size < 4 * src.stat().st_size + 65536  # (h5diff-clean: identity test)
    assert comm.bcast(ok)


def test_partially_readable_files_copy_or_name_the_object(real_data, tmp_path_factory) -> None:
    folder = out_dir(tmp_path_factory, "partial")
    outcomes = {}
    for name in corpus(real_data, "partially-readable"):
        out = folder / name.replace("/", "__")
        try:
            h5par.apply(real_data / name, out)
            outcomes[name] = "copied" if out.exists() else "missing output"
        except h5par.H5ParError as exc:
            text = str(exc)
            named = "cannot copy /" in text or "cannot read dataset /" in text
            outcomes[name] = (
                "named error" if named and not out.exists() and "\n" not in text else text
            )
    assert set(outcomes.values()) <= {"copied", "named error"}, outcomes
    # Raw chunks copy without their filter plugin: the zstd file comes through.
    assert outcomes["hdf5-examples_h5ex_d_zstd.h5"] == "copied"
