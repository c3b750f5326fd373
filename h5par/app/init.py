"""``h5par init JOB --input GLOB``: a commented job file for the files a glob finds.

The job lists the datasets of the first file (their shapes, dtypes and dimensions), notes
its coordinates (dimension scales, copied untouched unless named), writes every output
under ``out/`` with the input's name, and runs as written: a copy, until kernels are
added. One process reads one file's structure; no data is read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py

from h5par.engine.jobs import expand_inputs
from h5par.errors import UsageError
from h5par.hdf5.hierarchy import dataset_paths, is_scale
from h5par.hdf5.io import open_input
from h5par.hdf5.listing import dimension_names

__all__ = ["job_template", "write_job"]


def _describe(src: h5py.File, path: str) -> str:
    dset = src[path]
    shape = "x".join(map(str, dset.shape)) if dset.shape else "scalar"
    filters = f", {dset.compression}" if dset.compression else ""
    return f"#   {path}{dimension_names(dset)}  {dset.dtype} {shape}{filters}"


def job_template(pattern: str, files: list[Path]) -> str:
    """The job text for ``files`` found by ``pattern``, described from the first file."""
    with open_input(files[0], "auto", {}) as src:
        scales = {p: is_scale(src, p) for p in dataset_paths(src)}
        data = [p for p, scale in scales.items() if not scale]
        coordinates = [p for p, scale in scales.items() if scale]
        described = [_describe(src, p) for p in data]
    lines = [
        f"# Written by `h5par init` for {len(files)} file(s) matching {pattern!r}"
        f" (described: {files[0].name}).",
        "# Check it with `h5par plan JOB`, run it with `h5par run JOB`",
        "# (`mpirun -n 4 python -m mpi4py -m h5par run JOB` on 4 ranks).",
        "version = 1",
        "",
        "[input]",
        f"path = {json.dumps(pattern)}",
        f"# {len(data)} dataset(s) to process (name(dimensions)  dtype shape, filters):",
        *described,
    ]
    if coordinates:
        lines.append(
            f"# Coordinates (dimension scales), copied untouched unless named in datasets: "
            f"{', '.join(coordinates)}"
        )
    lines += [
        f"datasets = {json.dumps(data)}",
        "",
        "[output]",
        'path = "out/{name}"                 # {stem} {name} {index} of each input',
        '# compression = "gzip"              # keep (default) | gzip | lzf | none',
        "# compression_level = 4",
        "",
        "# Kernels run in order on every dataset; without any the job copies. `h5par kernels`",
        "# lists them with their parameters.",
        "# [[kernels]]",
        '# name = "clip"',
        "# min = 0.0",
        "",
        "[run]",
        'memory = "256MiB"                   # per rank',
    ]
    return "\n".join(lines) + "\n"


def write_job(job: str | os.PathLike[str], pattern: str, overwrite: bool = False) -> Path:
    """Write the job file ``job`` for the inputs ``pattern`` finds (relative to its folder)."""
    path = Path(job)
    if path.suffix != ".toml":
        raise UsageError(f"{str(path)!r}: a job file ends in .toml")
    if path.exists() and not overwrite:
        raise UsageError(f"{str(path)!r} exists (pass --overwrite to replace it)")
    if not path.parent.is_dir():
        raise UsageError(f"{str(path.parent)!r}: no such folder")
    text = job_template(pattern, expand_inputs(pattern, path.parent, "auto", key="--input"))
    path.write_text(text)
    return path
