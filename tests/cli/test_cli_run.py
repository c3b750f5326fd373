"""`h5par run` and `h5par plan` through the command line, under mpirun (serial pass)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from h5par.app.demo import write_demo_dumps, write_demo_input

JOBS = Path(__file__).resolve().parents[2] / "jobs"
# Runs the CLI and reports each rank's exit status on stdout.
WRAPPER = "import sys, h5par.app.cli as c; s = c.main(sys.argv[1:]); print(f'EXIT {s}', flush=True); sys.exit(s)"


def fill0(x: np.ndarray) -> np.ndarray:
    y = x.copy()
    y[np.isnan(y)] = 0.0
    return y


def masked(x: np.ndarray) -> np.ndarray:
    y = x.copy()
    y[x < 0] = -1 * x[x < 0]
    return y


def filled(x: np.ndarray) -> np.ndarray:
    y = x.copy()
    y[np.isnan(y)] = -9999.0
    return y


REFERENCES = {
    "clip_negatives": lambda x: np.clip(x, 0.0, None),
    "broadcast_row": lambda x: np.broadcast_to(x[:1], x.shape).copy(),
    "astype_float32": lambda x: x.astype(np.float32),
    "where_mask": masked,
    "fill_missing": filled,
    "scale_units": lambda x: x + 273.15,
    "abs_wind": np.abs,
    "reshape_field": lambda x: x.reshape(48, 2, 64, 128),
    "python_function": np.negative,
    "postprocess": lambda x: np.clip(fill0(x), 0.0, None).astype(np.float32),
    "select_every_other_step": lambda x: x[::2, 32:96, :].astype(np.float32),
    "smooth_field": lambda x: gaussian_filter1d(
        gaussian_filter1d(fill0(x), 1.5, 1, mode="wrap"), 1.5, 2, mode="wrap"
    ),
    "time_mean": lambda x: np.nanmean(x, axis=0),
}
#: Jobs whose results are sums: equal to the reference within 1e-12 x sum|x| (the contract).
SUMS = {"time_mean"}
#: Jobs that derive new datasets: the result from the input file and the reference file.
DERIVED = {
    "wind_speed": lambda f, ref: np.sqrt(f["simulation/u"][...] ** 2 + f["simulation/v"][...] ** 2),
    "anomaly": lambda f, ref: (f["simulation/field"][...] - ref["simulation/field"][...]).astype(
        np.float32
    ),
}
#: Jobs over a series of files: the files they read, and the result from numpy's stack of them.
SERIES = {
    "time_series": ("dumps/dump_*.h5", lambda s: np.concatenate(s)),
    "time_mean_over_dumps": ("dumps/dump_*.h5", lambda s: np.concatenate(s).astype("f8").mean(0)),
    "ensemble_mean": ("ensemble/member_*.h5", lambda s: np.stack(s).astype("f8").mean(0)),
}


@pytest.fixture(scope="module")
def demo_input(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "demo_input.h5"
    write_demo_input(path)
    write_demo_dumps(path.parent)
    with h5py.File(path) as f, h5py.File(path.parent / "reference.h5", "w") as ref:
        ref["simulation/field"] = np.nan_to_num(f["simulation/field"][...]).astype(np.float32)
    return path


def cli(run_mpi, nranks: int, args: list[str], cwd: Path | None = None):
    return run_mpi(nranks, ["-c", WRAPPER, *args], cwd=cwd)


@pytest.mark.parametrize("job", sorted(p.stem for p in JOBS.glob("*.toml")))
def test_every_shipped_job_plans_and_runs_at_2_ranks(
    run_mpi, run_python, demo_input, tmp_path, job
) -> None:
    sets = ["--set", f"input.path={demo_input}"]
    if job in SERIES:
        sets = ["--set", f"input.path={demo_input.parent / SERIES[job][0]}"]
        sets += ["--set", f"output.path={tmp_path}/demo_input_out.h5"]
    elif job != "statistics":
        sets += ["--set", f"output.path={tmp_path}/{{stem}}_out.h5"]
    reference_file = demo_input.parent / "reference.h5"  # a reference file of other values
    if job == "anomaly":
        sets += ["--set", f"derived.0.inputs.ref={reference_file}:/simulation/field"]
    planned = run_python(["-m", "h5par", "plan", str(JOBS / f"{job}.toml"), "--ranks", "2", *sets])
    assert planned.returncode == 0, planned.stderr
    assert "plan for 2 rank(s)" in planned.stdout
    report = tmp_path / "report.json"
    ran = cli(run_mpi, 2, ["run", str(JOBS / f"{job}.toml"), "--report", str(report), *sets])
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.count("EXIT 0") == 2 and ran.stdout.count("h5par run:") == 1
    summary = json.loads(report.read_text())
    if job == "statistics":
        stats = summary["files"][0]["reductions"]["/simulation/field"]
        with h5py.File(demo_input) as f:
            x = f["simulation/field"][...]
        finite = x[~np.isnan(x)]
        assert (
            stats["count"] == finite.size
            and stats["min"] == finite.min()
            and stats["max"] == finite.max()
        )
        assert stats["histogram"]["counts"] == np.histogram(finite, bins=20)[0].tolist()
        return
    out = tmp_path / "demo_input_out.h5"
    if job in SERIES:
        files = sorted(demo_input.parent.glob(SERIES[job][0]))
        with h5py.File(out) as g:
            want = SERIES[job][1]([h5py.File(p)["temperature"][...] for p in files])
            assert g["temperature"].dtype == want.dtype and g["temperature"].shape == want.shape
            got = g["temperature"][...]
            exact = job == "time_series"  # a copy: bitwise; means: within the contract's sums
            assert got.tobytes() == want.tobytes() if exact else np.allclose(got, want, rtol=1e-12)
        return
    if job in DERIVED:
        (path,) = summary["files"][0]["datasets"]
        with h5py.File(demo_input) as fin, h5py.File(reference_file) as ref, h5py.File(out) as g:
            assert g[path][...].tobytes() == DERIVED[job](fin, ref).tobytes()
        return
    reference = REFERENCES[job]
    with h5py.File(demo_input) as fin, h5py.File(out) as fout:
        assert fout.attrs["h5par_job_sha256"]
        for path in summary["files"][0]["datasets"]:
            x = fin[path][...]
            expected, got = reference(x), fout[path][...]
            assert got.dtype == expected.dtype and got.shape == expected.shape, path
            if job in SUMS:
                assert np.all(np.abs(got - expected) <= 1e-12 * np.nansum(np.abs(x))), path
            else:
                assert got.tobytes() == expected.tobytes(), path


@pytest.mark.parametrize("name", ["postprocess", "time_mean", "smooth_field"])
def test_plan_matches_what_run_did(run_mpi, run_python, demo_input, tmp_path, name) -> None:
    sets = [
        "--set",
        f"input.path={demo_input}",
        "--set",
        f"output.path={tmp_path}/o.h5",
        "--set",
        "run.memory=256KiB",
    ]
    job = str(JOBS / f"{name}.toml")
    planned = run_python(["-m", "h5par", "plan", job, "--ranks", "3", "--json", *sets])
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    ran = cli(run_mpi, 3, ["run", job, "--report", str(tmp_path / "r.json"), *sets])
    assert ran.returncode == 0, ran.stderr
    did = json.loads((tmp_path / "r.json").read_text())["files"][0]["decomposition"]
    predicted = {path: info["ranks"] for path, info in plan[0]["datasets"].items()}
    assert predicted == did
    assert any(share["steps"] > 1 for shares in did.values() for share in shares)


@pytest.mark.parametrize("nranks", [1, 3])
def test_twenty_dumps_give_twenty_outputs(run_mpi, tmp_path, nranks) -> None:
    rng = np.random.default_rng(7)
    expected = {}
    for i in range(20):
        x = rng.normal(size=(50 + 40 * i, 33))
        with h5py.File(tmp_path / f"dump_{i:02d}.h5", "w") as f:
            f["step/temperature"] = x
            f["step/temperature"].attrs["dt"] = 0.5
        expected[i] = np.clip(x, 0.0, None)
    job = tmp_path / "job.toml"
    job.write_text(
        'version = 1\n[input]\npath = "dump_*.h5"\n[output]\npath = "clean/{stem}.h5"\n'
        '[[kernels]]\nname = "clip"\nmin = 0.0\n[run]\nmemory = "64KiB"\nfile_parallel_below = "150KiB"\n'
    )
    (tmp_path / "clean").mkdir()
    result = cli(run_mpi, nranks, ["run", str(job), "--report", str(tmp_path / "r.json")])
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    owners = {len(f["ranks"]) for f in report["files"]}
    assert len(report["files"]) == 20
    if nranks == 3:
        assert owners == {1, 3}  # small dumps per rank, big ones split over all ranks
        assert {f["ranks"][0] for f in report["files"] if len(f["ranks"]) == 1} == {0, 1, 2}
    for i in range(20):
        with h5py.File(tmp_path / "clean" / f"dump_{i:02d}.h5") as f:
            assert f["step/temperature"][...].tobytes() == expected[i].tobytes()
            assert f["step/temperature"].attrs["dt"] == 0.5


def _no_constants(name: str) -> None:
    raise AssertionError(f"the report holds {name}, which is not JSON")


def test_report_writes_numbers_and_null_for_undefined_statistics(run_mpi, tmp_path) -> None:
    x = np.random.default_rng(22).normal(size=(12, 10, 8))
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f["field"] = x
        f["gaps"] = np.where(x > 0, np.nan, x)
        f["empty"] = np.full((4, 3), np.nan)  # skipna: nothing left to count
    (tmp_path / "job.toml").write_text(
        'version = 1\n[input]\npath = "in.h5"\n[output]\npath = "out.h5"\n'
        '[[kernels]]\nname = "reduce"\nop = ["min", "mean", "std", "count"]\nskipna = true\n'
        '[[kernels]]\nname = "reduce"\nop = "mean"\naxis = 0\n'
    )
    ran = cli(run_mpi, 2, ["run", str(tmp_path / "job.toml"), "--report", str(tmp_path / "r.json")])
    assert ran.returncode == 0, ran.stderr
    text = (tmp_path / "r.json").read_text()
    stats = json.loads(text, parse_constant=_no_constants)["files"][0]["reductions"]
    assert stats["/empty"] == {"min": None, "mean": None, "std": None, "count": 0}
    finite = x[x <= 0]
    assert stats["/gaps"]["count"] == finite.size and stats["/gaps"]["min"] == finite.min()
    assert stats["/field"]["count"] == x.size and stats["/field"]["min"] == x.min()
    assert abs(stats["/field"]["mean"] - x.mean()) <= 1e-12 * np.abs(x).sum()
    assert "/empty: min=nan, mean=nan, std=nan, count=0" in ran.stdout  # the summary says nan
