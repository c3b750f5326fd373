"""benchmarks/suite.py end to end on a tiny input, and its guard against wrong results.

A smoke test of the benchmark machinery, not of speed: nothing here asserts a timing.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace

import h5py
import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
WORKLOADS = ("clip", "stats", "astype")
METHODS = {
    "h5par-1": "h5par 1 rank",
    "h5par-2": "h5par 2 ranks",
    "h5py-mpio-2": "h5py+mpio 2 ranks",
    "h5py": "h5py serial",
    "rowloop": "row loop (book)",
    "dask": "dask threads",
    "heat-2": "heat 2 ranks",
    "cp": "cp",
    "dd-2-one-file": "2x dd, one file",
    "dd-2-two-files": "2x dd, two files",
}


def _heat_imports() -> bool:
    probe = subprocess.run([sys.executable, "-c", "import heat"], capture_output=True, check=False)
    return probe.returncode == 0


def _suite_data() -> ModuleType:
    """benchmarks/_suite_data.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("_suite_data", BENCHMARKS / "_suite_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("_suite_data", module)  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(400)
def test_suite_runs_every_method_and_writes_table_json_png(
    tmp_path: Path, mpitools: SimpleNamespace
) -> None:
    results = tmp_path / "results"
    cmd = [
        sys.executable,
        str(BENCHMARKS / "suite.py"),
        "--size=8MiB",
        "--rounds=2",
        "--warmup=0",
        "--rowloop-rows=256",
        f"--workdir={tmp_path / 'work'}",
        f"--results={results}",
    ]
    t0 = time.perf_counter()
    done = mpitools.launch(cmd, env=mpitools.mpi_env(), timeout=360)
    print(f"suite smoke run: {time.perf_counter() - t0:.1f} s")  # shown with -rP / on failure
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    data = json.loads((results / "suite.json").read_text())
    assert set(data["methods"]) == set(METHODS)
    assert list(data["workloads"]) == list(WORKLOADS)
    assert data["input"]["shape"] == [1024, 1024] and data["input"]["nbytes"] == 8 << 20
    heat = _heat_imports()
    for name in WORKLOADS:
        methods = data["workloads"][name]["methods"]
        assert set(methods) == set(METHODS), name
        for key, entry in methods.items():
            if key == "heat-2" and not heat:
                assert entry["status"] == "skipped"
                assert entry["reason"].startswith("not installed")
                assert not entry["runs"]
                continue
            assert entry["status"] == "ok", (name, key, entry.get("reason"))
            assert entry["verification"]["ok"], (name, key, entry["verification"])
            runs = entry["runs"]
            assert len(runs) == 2 and all(r["returncode"] == 0 and r["wall"] > 0 for r in runs)
            summary = entry["summary"]
            assert summary["rounds"] == 2
            assert summary["wall_seconds"]["min"] <= summary["wall_seconds"]["median"]
            assert summary["speed_vs_h5py"] > 0 and summary["speed_vs_cp"] > 0
            ranks = data["methods"][key]["ranks"]
            if key == "cp":  # measured through GNU time, when it is installed
                ranks = 1 if shutil.which("time", path="/usr/bin:/bin") else 0
            if key.startswith("dd-"):  # two dd processes in a shell: peak RSS not recorded
                ranks = 0
            rss = summary["peak_rss_mib_per_rank"]
            assert len(rss) == ranks and all(v > 0.1 for v in rss), (key, rss)
            if key.startswith("h5par"):
                assert all(r["h5par"]["seconds"] == r["inner"] > 0 for r in runs)
        assert methods["h5py"]["summary"]["speed_vs_h5py"] == pytest.approx(1.0)
        rowloop = methods["rowloop"]
        assert rowloop["summary"]["extrapolated"] and rowloop["summary"]["rows_done"] == 256
        if name != "stats":
            assert methods["h5py"]["verification"]["same_layout"]

    table = (results / "suite.txt").read_text()
    assert table.strip() in done.stdout
    for label in METHODS.values():
        assert label in table
    assert "row loop timed on the first 256 of 1024 rows" in table
    assert "page cache" in table
    png = (results / "suite.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000


def test_verification_rejects_a_wrong_output_and_wrong_statistics(tmp_path: Path) -> None:
    data = _suite_data()
    spec = data.InputSpec(shape=(64, 32))
    source, reference, reused = data.prepare_input(spec, tmp_path)
    assert not reused
    assert data.prepare_input(spec, tmp_path)[2]  # the same spec reuses the file
    with h5py.File(source) as f:
        x = f[data.DATASET][...]
    assert reference["min"] == x.min() and reference["max"] == x.max()
    assert reference["std"] == pytest.approx(x.std(), rel=1e-12)
    clip = data.WORKLOADS["clip"]

    def write(name: str, values: np.ndarray) -> Path:
        path = tmp_path / name
        with h5py.File(path, "w") as f:
            f.create_dataset(data.DATASET, data=values)
        return path

    ok, message, _ = data.verify_output(spec, clip, source, write("good.h5", np.clip(x, 0, None)))
    assert ok, message
    unclipped = write("copy.h5", x)  # fast and wrong: must not pass
    ok, message, _ = data.verify_output(spec, clip, source, unclipped)
    assert not ok and "differ from numpy" in message
    ok, message, _ = data.verify_output(spec, clip, source, write("f4.h5", x.astype("f4")))
    assert not ok and "dtype" in message
    assert data.verify_stats(dict(reference), reference)[0]
    assert not data.verify_stats({**reference, "mean": reference["mean"] + 1e-6}, reference)[0]
    # a mean near 0 is judged against the spread (HeAT's is 2.5e-12 off on the suite's input)
    close = reference["mean"] + 1e-10 * reference["std"]
    assert data.verify_stats({**reference, "mean": close}, reference)[0]
    assert not data.verify_stats({**reference, "max": reference["max"] * 0.5}, reference)[0]


def test_heat_runs_with_its_own_interpreter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--heat-python (make bench: .venv-heat/bin/python) launches the heat runs only."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("_suite_main", BENCHMARKS / "suite.py")
    assert spec is not None and spec.loader is not None
    suite = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "_suite_main", suite)  # dataclasses look their module up
    spec.loader.exec_module(suite)
    heat_python = tmp_path / "heat-python"
    heat_python.symlink_to(sys.executable)
    args = suite.parse_args(["--methods=h5py,heat", f"--heat-python={heat_python}"])
    ctx = suite.Context(suite.InputSpec(shape=(64, 32)), tmp_path / "in.h5", {}, tmp_path, args, {})
    clip, out = suite.WORKLOADS["clip"], tmp_path / "out.h5"
    runs = {m.kind: suite.command(ctx, m, clip, out, m.key)[0] for m in suite.methods(args)}
    assert runs["h5py"][0] == sys.executable
    assert runs["heat"][0] == "mpirun" and str(heat_python) in runs["heat"]
    assert sys.executable not in runs["heat"]
    assert suite.parse_args([]).heat_python == sys.executable  # default: --python
    with pytest.raises(SystemExit):
        suite.parse_args([f"--heat-python={tmp_path / 'missing'}"])


@pytest.mark.timeout(400)
def test_chunked_benchmark_runs_and_verifies_every_method(
    tmp_path: Path, mpitools: SimpleNamespace
) -> None:
    """benchmarks/chunked.py on 8 planes: every method ran, its output checked against numpy."""
    results = tmp_path / "results"
    cmd = [
        sys.executable,
        str(BENCHMARKS / "chunked.py"),
        "--planes=8",
        "--plain=16MiB",
        "--rounds=1",
        f"--results={results}",
    ]
    done = mpitools.launch(cmd, env=mpitools.mpi_env(), timeout=360)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    data = json.loads((results / "chunked.json").read_text())
    assert data["failures"] == []
    methods = {"serial", "mpio-2", "h5par-1", "h5par-2", "h5par-2-subfiled"}
    for workload in ("compressed", "rechunk", "plain"):
        rows = {r["method"]: r for r in data["rows"] if r["workload"] == workload}
        assert set(rows) == methods, workload
        assert all(r["median"] > 0 for r in rows.values())
    text = (results / "chunked.txt").read_text()
    assert "h5par-2" in text and ">= 1.8" in text


def test_chunked_benchmark_refuses_a_wrong_output(tmp_path: Path) -> None:
    """Its check is real: a copy that is not np.clip fails verification."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import chunked
    finally:
        sys.path.remove(str(BENCHMARKS))
    root = tmp_path / "w"
    (root / "out").mkdir(parents=True)
    data = np.random.default_rng(1).normal(size=(8, 256, 256)).astype("f4")
    layout = chunked.layouts("compressed")[1]
    for name, values in (("in.h5", data), ("out/out.h5", data)):  # not clipped
        with h5py.File(root / name, "w") as f:
            f.create_dataset("x", data=values, **{**layout, "chunks": (4, 64, 64)})
    assert "chunks" in (chunked.verify("compressed", root) or "")
    with h5py.File(root / "out/out.h5", "w") as f:
        f.create_dataset("x", data=data, **layout)
    assert "differ from np.clip" in (chunked.verify("compressed", root) or "")


@pytest.mark.skipif(shutil.which("ncap2") is None, reason="NCO's ncap2 is not installed")
def test_derived_benchmark_runs_and_verifies_every_method(
    tmp_path: Path, mpitools: SimpleNamespace
) -> None:
    """benchmarks/derived.py on 8 MiB fields: ncap2, serial and h5par ran and were checked."""
    results = tmp_path / "results"
    cmd = [sys.executable, str(BENCHMARKS / "derived.py"), "--size=8MiB", "--rounds=1"]
    done = mpitools.launch([*cmd, f"--results={results}"], env=mpitools.mpi_env(), timeout=360)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    data = json.loads((results / "derived.json").read_text())
    assert data["failures"] == []
    for workload in ("copy", "only"):
        rows = {r["method"]: r for r in data["rows"] if r["workload"] == workload}
        assert set(rows) == {"ncap2", "serial", "h5par-1", "h5par-2"}, workload
    assert ">= 1.5" in (results / "derived.txt").read_text()


def test_derived_benchmark_refuses_a_wrong_output(tmp_path: Path) -> None:
    """Its check is real: a speed off by one ulp fails h5par's bitwise check."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import derived
    finally:
        sys.path.remove(str(BENCHMARKS))
    (tmp_path / "out").mkdir()
    rng = np.random.default_rng(2)
    u, v = rng.normal(size=(2, 4, 4)).astype("f4"), rng.normal(size=(2, 4, 4)).astype("f4")
    with h5py.File(tmp_path / "in.nc", "w") as f:
        f["u"], f["v"] = u, v
    with h5py.File(tmp_path / "out/out.nc", "w") as f:
        f["u"] = u
        f["speed"] = np.nextafter(np.sqrt(u**2 + v**2), np.float32(np.inf))
    assert "differ from numpy" in (derived.verify(tmp_path, "copy", "h5par-2") or "")
    assert derived.verify(tmp_path, "copy", "ncap2") is None  # one ulp: NCO's tolerance
    assert "u kept" in (derived.verify(tmp_path, "only", "serial") or "")


@pytest.mark.skipif(shutil.which("ncrcat") is None, reason="NCO is not installed")
def test_series_benchmark_runs_and_verifies_every_method(
    tmp_path: Path, mpitools: SimpleNamespace
) -> None:
    """benchmarks/series.py on 4 small dumps: NCO (and CDO if installed) and h5par, checked."""
    results = tmp_path / "results"
    cmd = [sys.executable, str(BENCHMARKS / "series.py"), "--dumps=4", "--steps=3", "--plane=32"]
    done = mpitools.launch(
        [*cmd, "--rounds=1", f"--results={results}"], env=mpitools.mpi_env(), timeout=360
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    data = json.loads((results / "series.json").read_text())
    assert data["failures"] == []
    peers = {"concat": "ncrcat", "timmean": "ncra", "ensmean": "nces"}
    for workload, peer in peers.items():
        rows = {r["method"] for r in data["rows"] if r["workload"] == workload}
        assert {peer, "h5par-1", "h5par-2"} <= rows, workload
    assert ">= 1.5" in (results / "series.txt").read_text()


def test_series_benchmark_refuses_a_wrong_output(tmp_path: Path) -> None:
    """Its check is real: a dump left out of the series, or a mean off by 1e-9, fails."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import series
    finally:
        sys.path.remove(str(BENCHMARKS))
    series.make_dumps(tmp_path / "dumps", 3, 2, 8)
    (tmp_path / "out").mkdir()
    parts = {
        n: [h5py.File(p)[n][...] for p in sorted((tmp_path / "dumps").iterdir())]
        for n in series.FIELDS
    }
    with h5py.File(tmp_path / "out/out.nc", "w") as f:
        for name, arrays in parts.items():
            f[name] = np.concatenate(arrays[:2])
    assert "the part of dump_002.nc differs" in (series.verify(tmp_path, "concat", "h5par-2") or "")
    with h5py.File(tmp_path / "out/out.nc", "w") as f:
        for name, arrays in parts.items():
            f[name] = np.concatenate(arrays).astype("f8").mean(0) * (1 + 1e-9)
    assert "differs from numpy's" in (series.verify(tmp_path, "timmean", "h5par-2") or "")
    assert series.verify(tmp_path, "timmean", "ncra") is None  # within the peers' 1e-6
