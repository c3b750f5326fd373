"""The suite's input and its checks: generation, workloads, verification against numpy.

Used by ``benchmarks/suite.py`` (the driver) and ``benchmarks/_suite_workers.py`` (the
baselines). Pure numpy + h5py; no MPI.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

#: The dataset every input holds (and every output writes).
DATASET = "field"

#: Relative tolerance of mean and std against the reference (summation order differs by
#: method; min and max must be exact). The mean's rounding error scales with the values, not
#: with the mean (about 0 for the suite's input), so it may also be off by STATS_RTOL x std.
STATS_RTOL = 1e-9


@dataclasses.dataclass(frozen=True)
class Workload:
    """One operation measured across methods.

    ``kernels`` is the h5par job's kernel list; ``out_dtype`` is None when nothing is
    written (statistics only).
    """

    name: str
    kernels: tuple[dict[str, Any], ...]
    out_dtype: str | None
    description: str

    def apply(self, block: np.ndarray) -> np.ndarray:
        """What numpy does to ``block`` (the reference of verification)."""
        if self.name == "clip":
            return np.asarray(np.clip(block, 0.0, None))
        if self.name == "astype":
            return block.astype(np.float32)
        raise ValueError(f"workload {self.name!r} writes no output")


WORKLOADS: dict[str, Workload] = {
    "clip": Workload(
        "clip", ({"name": "clip", "min": 0.0},), "float64", "clip negatives to 0 (float64 out)"
    ),
    "stats": Workload(
        "stats",
        ({"name": "reduce", "op": ["min", "max", "mean", "std"]},),
        None,
        "min, max, mean, std (no output)",
    ),
    "astype": Workload(
        "astype", ({"name": "astype", "dtype": "float32"},), "float32", "float64 -> float32"
    ),
}

LAYOUTS = ("contiguous", "chunked-gzip")


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """The generated input: a float64 dataset of ``shape``, contiguous or chunked + gzip."""

    shape: tuple[int, ...]
    layout: str = "contiguous"
    chunk_rows: int = 128
    gzip_level: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.shape) < 2 or min(self.shape) < 1:
            raise ValueError(f"shape {self.shape}: expected at least 2 positive extents")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout {self.layout!r} (valid: {', '.join(LAYOUTS)})")

    @classmethod
    def from_size(cls, nbytes: int, width: int, **options: Any) -> InputSpec:
        """A 2-d input of about ``nbytes`` bytes with rows of ``width`` float64 values."""
        rows = max(1, nbytes // (8 * width))
        return cls(shape=(rows, width), **options)

    @property
    def rows(self) -> int:
        """Extent of axis 0 (the axis every method iterates over)."""
        return self.shape[0]

    @property
    def row_bytes(self) -> int:
        """Bytes of one float64 row ``x[i]``."""
        return 8 * math.prod(self.shape[1:])

    @property
    def nbytes(self) -> int:
        """Bytes of the whole float64 dataset."""
        return self.rows * self.row_bytes

    def chunks(self) -> tuple[int, ...] | None:
        """The HDF5 chunk shape (None: contiguous)."""
        if self.layout == "contiguous":
            return None
        return (min(self.chunk_rows, self.rows), *self.shape[1:])

    def create_kwargs(self) -> dict[str, Any]:
        """``create_dataset`` keywords of this layout (outputs are created the same way)."""
        if self.layout == "contiguous":
            return {}
        return {"chunks": self.chunks(), "compression": "gzip", "compression_opts": self.gzip_level}

    def block_rows(self, block_bytes: int) -> int:
        """Rows per block of about ``block_bytes`` (a whole number of chunks when chunked)."""
        rows = max(1, block_bytes // self.row_bytes)
        chunks = self.chunks()
        if chunks is not None:
            rows = max(chunks[0], rows // chunks[0] * chunks[0])
        return min(rows, self.rows)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (also the identity of a reusable input)."""
        return {
            "shape": list(self.shape),
            "dtype": "float64",
            "nbytes": self.nbytes,
            "layout": self.layout,
            "chunks": None if self.chunks() is None else list(self.chunks() or ()),
            "gzip_level": self.gzip_level if self.layout != "contiguous" else None,
            "seed": self.seed,
        }


@dataclasses.dataclass
class Moments:
    """Streaming min / max / mean / M2 (Chan et al.), as numpy partials per block."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    def add(self, block: np.ndarray, scratch: np.ndarray | None = None) -> None:
        """Fold ``block`` in; ``scratch`` (same shape, float64) avoids a temporary."""
        n = int(block.size)
        if n == 0:
            return
        mean = float(np.sum(block, dtype=np.float64)) / n
        if scratch is None:
            m2 = float(np.sum(np.square(block - mean)))
        else:
            np.subtract(block, mean, out=scratch)
            np.square(scratch, out=scratch)
            m2 = float(np.sum(scratch))
        self.combine(Moments(n, mean, m2, float(np.min(block)), float(np.max(block))))

    def combine(self, other: Moments) -> None:
        """Fold another partial in (order-independent up to rounding)."""
        if other.count == 0:
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.m2 += other.m2 + delta * delta * self.count * other.count / total
        self.mean += delta * other.count / total
        self.count = total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def result(self) -> dict[str, float]:
        """``{"min", "max", "mean", "std"}`` (std with ddof = 0, as numpy and h5par)."""
        std = math.sqrt(self.m2 / self.count) if self.count else math.nan
        return {"min": self.min, "max": self.max, "mean": self.mean, "std": std}


def generate(spec: InputSpec, path: Path, block_bytes: int = 32 << 20) -> dict[str, float]:
    """Write the input (standard normal values, half negative) and return its statistics."""
    rng = np.random.default_rng(spec.seed)
    moments = Moments()
    step = spec.block_rows(block_bytes)
    with h5py.File(path, "w") as f:
        dset = f.create_dataset(
            DATASET, spec.shape, "f8", fill_time="never", **spec.create_kwargs()
        )
        for start in range(0, spec.rows, step):
            stop = min(start + step, spec.rows)
            block = rng.standard_normal((stop - start, *spec.shape[1:]))
            dset.write_direct(block, dest_sel=np.s_[start:stop])
            moments.add(block)
    return moments.result()


def prepare_input(spec: InputSpec, folder: Path) -> tuple[Path, dict[str, float], bool]:
    """The input in ``folder``: reused when a sidecar says it matches ``spec``, else written.

    Returns the path, the reference statistics and whether it was reused.
    """
    path = folder / "input.h5"
    sidecar = folder / "input.json"
    if path.is_file() and sidecar.is_file():
        saved = json.loads(sidecar.read_text())
        if saved.get("spec") == spec.describe() and saved.get("size") == path.stat().st_size:
            return path, saved["reference"], True
    sidecar.unlink(missing_ok=True)
    reference = generate(spec, path)
    sidecar.write_text(
        json.dumps({"spec": spec.describe(), "size": path.stat().st_size, "reference": reference})
    )
    return path, reference, False


def sample_rows(rows: int, count: int = 64, seed: int = 1) -> np.ndarray:
    """Sorted distinct row indices to verify: the first, the last and ``count`` random ones."""
    picked = np.random.default_rng(seed).integers(0, rows, size=count)
    return np.unique(np.concatenate([[0, rows - 1], picked]))


def layout_of(dset: h5py.Dataset) -> dict[str, Any]:
    """Chunks and compression of a dataset (to compare outputs with the input's layout)."""
    return {
        "chunks": None if dset.chunks is None else list(dset.chunks),
        "compression": dset.compression,
    }


def verify_output(
    spec: InputSpec,
    workload: Workload,
    source: Path,
    output: Path,
    rows_done: int | None = None,
) -> tuple[bool, str, dict[str, Any]]:
    """Compare sampled rows of ``output`` with numpy applied to ``source``, bitwise.

    ``rows_done`` limits the sample to a prefix (a row loop timed on part of the input).
    Returns (ok, message, output layout).
    """
    limit = spec.rows if rows_done is None else rows_done
    rows = sample_rows(limit)
    if not output.is_file():
        return False, f"no output file {output}", {}
    with h5py.File(source, "r") as fin, h5py.File(output, "r") as fout:
        if DATASET not in fout:
            return False, f"no dataset /{DATASET} in {output.name}", {}
        dout = fout[DATASET]
        layout = layout_of(dout)
        if dout.shape != spec.shape:
            return False, f"shape {dout.shape}, expected {spec.shape}", layout
        if dout.dtype != np.dtype(workload.out_dtype):
            return False, f"dtype {dout.dtype}, expected {workload.out_dtype}", layout
        expected = workload.apply(fin[DATASET][rows])
        got = dout[rows]
    if not np.array_equal(got, expected):
        bad = int(np.count_nonzero(got != expected))
        return False, f"{bad} of {expected.size} sampled values differ from numpy", layout
    note = f"{len(rows)} sampled rows equal numpy"
    if rows_done is not None and rows_done < spec.rows:
        note += f" (within the {rows_done} rows processed)"
    return True, note, layout


def prefix_stats(source: Path, rows: int) -> dict[str, float]:
    """numpy's min / max / mean / std of the first ``rows`` rows (a capped row loop's share)."""
    with h5py.File(source, "r") as f:
        x = f[DATASET][:rows]
    return {
        "min": float(x.min()),
        "max": float(x.max()),
        "mean": float(x.mean()),
        "std": float(x.std()),
    }


def verify_stats(got: dict[str, Any], reference: dict[str, float]) -> tuple[bool, str]:
    """min and max exactly, mean and std within :data:`STATS_RTOL` of the reference.

    The mean may also differ by ``STATS_RTOL`` x the reference std: with a mean near 0, its
    relative error says nothing (HeAT's mean of the 8 MiB input is 2.5e-12 off, numpy's 1e-19).
    """
    problems = []
    spread = abs(reference.get("std", 0.0)) * STATS_RTOL
    for op, want in reference.items():
        value = got.get(op)
        if not isinstance(value, (int, float)):
            problems.append(f"{op} missing")
        elif (op in ("min", "max") and value != want) or (
            op in ("mean", "std")
            and not math.isclose(
                value, want, rel_tol=STATS_RTOL, abs_tol=max(1e-12, spread if op == "mean" else 0)
            )
        ):
            problems.append(f"{op} = {value!r}, expected {want!r}")
    if problems:
        return False, "; ".join(problems)
    return True, "min/max exact, mean/std within 1e-9 of numpy (mean: or of 1e-9 x std)"


def vmhwm_kib() -> int:
    """Peak resident set size of this process (VmHWM, KiB) from /proc/self/status; 0 if unknown."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def remove(path: Path) -> None:
    """Delete a file if it exists (outputs between runs)."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
