"""What a person reads after a many-file job (issue 22, items 4, 7 and 8).

Progress counts the files every rank processes alone; ``plan`` numbers shares by the job's
ranks, sums them per rank, takes ``--overwrite`` and lists every problem it finds; ``run``
sums up long jobs, with sizes on disk and tidy paths.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

H5PAR = ["-m", "h5par"]


def _dumps(folder: Path, n: int, rows: int = 64) -> None:
    """``n`` small dumps with a field T (float64, rows x 1024) and a coordinate x."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        with h5py.File(folder / f"dump_{i:02d}.h5", "w") as f:
            f["T"] = np.random.default_rng(i).normal(size=(rows, 1024))
            f["x"] = np.arange(4.0)


def _job(path: Path, extra: str = "") -> Path:
    """A clip job in ``path``'s folder reading ../data (its paths hold ``..``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        'version = 1\n[input]\npath = "../data/dump_*.h5"\ndatasets = ["/T"]\n'
        '[output]\npath = "../clean/{stem}.h5"\ncompression = "gzip"\n'
        f'[[kernels]]\nname = "clip"\nmin = 0.0\n[run]\nmemory = "64KiB"\n{extra}'
    )
    return path


@pytest.mark.parametrize("nranks", [2, 3])
def test_progress_counts_the_files_every_rank_processes_alone(run_mpi, tmp_path, nranks) -> None:
    _dumps(tmp_path / "data", 9)
    job = _job(tmp_path / "jobs" / "job.toml")
    ran = run_mpi(nranks, [*H5PAR, "run", str(job)], env={"H5PAR_PROGRESS_SECONDS": "0"})
    assert ran.returncode == 0, ran.stderr
    shares = [float(s) for s in re.findall(r"h5par progress:\s+([\d.]+)%", ran.stderr)]
    assert shares, ran.stderr
    assert shares == sorted(shares)
    assert shares[-1] >= 95.0, ran.stderr  # all 9 files, not rank 0's 3 (33 %)
    assert shares[-1] <= 100.0


def test_plan_names_the_ranks_that_process_each_file(run_mpi, run_python, tmp_path) -> None:
    _dumps(tmp_path / "data", 5)
    _dumps(tmp_path / "data", 1, rows=2048)  # dump_00 is big: every rank shares it
    job = _job(tmp_path / "jobs" / "job.toml", 'file_parallel_below = "1MiB"\n')
    planned = run_python([*H5PAR, "plan", str(job), "--ranks", "3"])
    assert planned.returncode == 0, planned.stderr
    owner = None
    for line in planned.stdout.splitlines():
        if (found := re.search(r"\[file-level \(rank (\d)\)\]", line)) is not None:
            owner = found.group(1)
        elif "[dataset-level" in line:
            owner = None
        elif (share := re.match(r"\s+rank (\d): \[", line)) and owner is not None:
            assert share.group(1) == owner, planned.stdout
    assert {f"rank {r})]" for r in range(3)} <= set(re.findall(r"rank \d\)\]", planned.stdout))
    totals = planned.stdout.split("per rank:\n")[1].splitlines()
    assert [t.split(":")[0].strip() for t in totals] == ["rank 0", "rank 1", "rank 2"]
    assert all("file(s)" in t and "step(s)" in t for t in totals)
    # The plan is what the run does, per-rank files included.
    as_json = run_python([*H5PAR, "plan", str(job), "--ranks", "3", "--json"])
    predicted = {e["input"]: e["datasets"]["/T"]["ranks"] for e in json.loads(as_json.stdout)}
    report = tmp_path / "r.json"
    ran = run_mpi(3, [*H5PAR, "run", str(job), "--report", str(report)])
    assert ran.returncode == 0, ran.stderr
    did = {f["input"]: f["decomposition"]["/T"] for f in json.loads(report.read_text())["files"]}
    assert did == predicted


def test_a_long_run_prints_totals_and_the_slowest_files(run_mpi, tmp_path) -> None:
    _dumps(tmp_path / "data", 12)
    job = _job(tmp_path / "jobs" / "job.toml")
    report = tmp_path / "r.json"
    ran = run_mpi(2, [*H5PAR, "run", str(job), "--report", str(report)])
    assert ran.returncode == 0, ran.stderr
    outputs = sorted((tmp_path / "clean").glob("*.h5"))
    on_disk = sum(p.stat().st_size for p in outputs)
    assert len(outputs) == 12
    lines = ran.stdout.splitlines()
    assert lines[1].strip().startswith("12 files: 12 written, 0 skipped, 0 failed, ")
    data = json.loads(report.read_text())
    assert data["totals"]["stored_bytes"] == data["stored_bytes"] == on_disk
    assert data["stored_bytes"] < data["bytes_written"]  # gzip: less on disk than the data
    assert re.search(
        r"wrote [\d.]+ [KM]iB on disk \([\d.]+ MiB processed, uncompressed\)", ran.stdout
    )
    assert "slowest 3 of 12 file(s)" in ran.stdout
    assert sum("dump_" in line for line in lines) == 3
    assert "../" not in ran.stdout
    assert len(data["files"]) == 12
    assert all("../" not in f["input"] + f["output"] for f in data["files"])
    assert {f["stored_bytes"] for f in data["files"]} == {p.stat().st_size for p in outputs}
    verbose = run_mpi(2, [*H5PAR, "run", str(job), "--verbose"])
    assert verbose.returncode == 0, verbose.stderr
    assert "12 files: 0 written, 12 skipped, 0 failed" in verbose.stdout  # a rerun
    assert verbose.stdout.count("[done by an earlier run of this job]") == 12
    again = run_mpi(2, [*H5PAR, "run", str(job)])
    assert "12 files: 0 written, 12 skipped" in again.stdout
    assert "[done by an earlier run" not in again.stdout


def test_plan_after_a_run_takes_overwrite_and_lists_every_problem(run_python, tmp_path) -> None:
    _dumps(tmp_path / "data", 3)
    job = _job(tmp_path / "jobs" / "job.toml")
    assert run_python([*H5PAR, "run", str(job)]).returncode == 0
    same = run_python([*H5PAR, "plan", str(job)])
    assert same.returncode == 0, same.stderr  # the rerun would skip every file: no problem
    assert "3 file(s), 3 done by an earlier run (skipped)" in same.stdout
    redo = run_python([*H5PAR, "plan", str(job), "--overwrite"])
    assert redo.returncode == 0, redo.stderr
    assert redo.stdout.count("[file-level (rank 0)]") == 3
    typo = ["--set", 'input.datasets=["/Tx"]']  # another job: its outputs exist
    bad = run_python([*H5PAR, "plan", str(job), *typo])
    assert bad.returncode == 2, bad.stderr
    errors = bad.stderr.splitlines()
    assert all(line.startswith("h5par: error: ") for line in errors), bad.stderr
    assert sum("exists" in line and "--overwrite" in line for line in errors) == 3
    assert sum("'/Tx' matches no dataset" in line for line in errors) == 3
    assert len(errors) == 6
    forced = run_python([*H5PAR, "plan", str(job), *typo, "--overwrite"])
    assert forced.returncode == 2
    assert len(forced.stderr.splitlines()) == 3 and "exists" not in forced.stderr
    ran = run_python([*H5PAR, "run", str(job), *typo])
    assert ran.returncode == 2 and len(ran.stderr.splitlines()) == 1  # run: the first one


def test_plan_lists_the_problems_of_every_dataset(run_python, tmp_path) -> None:
    _dumps(tmp_path / "data", 2)
    with h5py.File(tmp_path / "data" / "dump_01.h5", "a") as f:
        f["S"] = np.zeros((3, 3), dtype="S4")  # clip refuses strings
    job = _job(tmp_path / "jobs" / "job.toml")
    sets = ["--set", 'input.datasets=["/T", "/S", "/nope"]', "--set", 'input.select={"/q" = "0"}']
    bad = run_python([*H5PAR, "plan", str(job), *sets])
    assert bad.returncode == 2
    errors = bad.stderr.splitlines()
    assert sum("'/nope' matches no dataset" in e for e in errors) == 2, bad.stderr
    assert sum("'/S' matches no dataset" in e for e in errors) == 1, bad.stderr
    assert sum("dump_01.h5" in e and "'clip' cannot process dtype |S4" in e for e in errors) == 1
    assert sum("select '/q'" in e for e in errors) == 2, bad.stderr
    assert len(errors) == 6, bad.stderr
