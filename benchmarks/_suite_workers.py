"""The suite's baselines, one process per run (``benchmarks/suite.py`` launches them).

    python benchmarks/_suite_workers.py METHOD --workload W --spec JSON --input IN
        [--output OUT] --result RESULT.json [--block-mib 32] [--rows-cap N] [--dask-chunk-mib 32]

METHOD is one of:

- ``h5py``: the best serial h5py code — blocked ``read_direct`` / ``write_direct`` through
  preallocated buffers, numpy ``out=`` kernels, the output created with the input's layout
  and ``fill_time="never"``;
- ``rowloop``: the book's row-by-row loop (``val = dset[ix, :]; val[val < 0] = 0;
  dset2[ix, :] = val``), on the first ``--rows-cap`` rows only when asked;
- ``dask``: ``da.from_array(dset, chunks=...)`` then ``.clip(0, None)`` / ``.astype`` and
  ``da.to_hdf5``, or ``da.compute(x.min(), x.max(), x.mean(), x.std())``, threaded scheduler;
- ``h5py-mpio`` (under mpirun): hand-written parallel h5py — each rank its rows, blocked
  reads into preallocated buffers, collective writes;
- ``heat`` (under mpirun): ``heat.load_hdf5(split=0)``, ``heat.clip`` / ``astype`` /
  ``min max mean std``, ``heat.save_hdf5``.

Each run writes RESULT.json: ``seconds`` (its own timer, imports and interpreter start
excluded), ``rows_done``, ``stats`` (statistics workload) and ``vmhwm_kib`` (peak RSS per
rank, KiB).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from _suite_data import DATASET, WORKLOADS, InputSpec, Moments, Workload, vmhwm_kib

Result = dict[str, Any]


def _kernel(workload: Workload) -> Callable[[np.ndarray, np.ndarray], object]:
    """The workload as an in-place numpy step ``kernel(block, out)`` (no temporaries)."""
    if workload.name == "clip":
        return lambda block, out: np.clip(block, 0.0, None, out=out)
    if workload.name == "astype":
        return lambda block, out: np.copyto(out, block, casting="same_kind")
    raise ValueError(f"workload {workload.name!r} writes nothing")


def _out_buffer(buf: np.ndarray, workload: Workload) -> np.ndarray:
    """The output buffer: the input buffer itself when the dtype is kept (in-place kernel)."""
    assert workload.out_dtype is not None
    if np.dtype(workload.out_dtype) == buf.dtype:
        return buf
    return np.empty(buf.shape, workload.out_dtype)


def serial_h5py(
    spec: InputSpec, workload: Workload, src: Path, dst: Path | None, block_bytes: int
) -> Result:
    """Blocked read_direct / write_direct through preallocated buffers (one process)."""
    step = spec.block_rows(block_bytes)
    buf = np.empty((step, *spec.shape[1:]))
    t0 = time.perf_counter()
    with h5py.File(src, "r") as fin:
        din = fin[DATASET]
        if workload.out_dtype is None:
            scratch = np.empty_like(buf)
            moments = Moments()
            for start in range(0, spec.rows, step):
                n = min(step, spec.rows - start)
                din.read_direct(buf, np.s_[start : start + n], np.s_[0:n])
                moments.add(buf[:n], scratch[:n])
            return {"seconds": time.perf_counter() - t0, "stats": moments.result()}
        assert dst is not None
        out, kernel = _out_buffer(buf, workload), _kernel(workload)
        with h5py.File(dst, "w") as fout:
            dout = fout.create_dataset(
                DATASET, spec.shape, workload.out_dtype, fill_time="never", **spec.create_kwargs()
            )
            for start in range(0, spec.rows, step):
                n = min(step, spec.rows - start)
                din.read_direct(buf, np.s_[start : start + n], np.s_[0:n])
                kernel(buf[:n], out[:n])
                dout.write_direct(out, np.s_[0:n], np.s_[start : start + n])
    return {"seconds": time.perf_counter() - t0}


def rowloop(
    spec: InputSpec, workload: Workload, src: Path, dst: Path | None, rows_cap: int
) -> Result:
    """The book's loop, one ``dset[ix, :]`` read and write per row, on ``rows_cap`` rows."""
    rows = spec.rows if rows_cap <= 0 else min(rows_cap, spec.rows)
    t0 = time.perf_counter()
    with h5py.File(src, "r") as f:
        dset = f[DATASET]
        if workload.out_dtype is None:
            moments = Moments()
            for ix in range(rows):
                val = dset[ix, :]
                moments.add(val)
            return {
                "seconds": time.perf_counter() - t0,
                "rows_done": rows,
                "stats": moments.result(),
            }
        assert dst is not None
        with h5py.File(dst, "w") as g:
            dset2 = g.create_dataset(
                DATASET, spec.shape, workload.out_dtype, **spec.create_kwargs()
            )
            if workload.name == "clip":
                for ix in range(rows):
                    val = dset[ix, :]
                    val[val < 0] = 0
                    dset2[ix, :] = val
            else:
                for ix in range(rows):
                    dset2[ix, :] = dset[ix, :].astype(workload.out_dtype)
    return {"seconds": time.perf_counter() - t0, "rows_done": rows}


def dask_array(
    spec: InputSpec, workload: Workload, src: Path, dst: Path | None, chunk_bytes: int
) -> Result:
    """dask.array over the h5py dataset, threaded scheduler; ``da.to_hdf5`` for outputs."""
    import dask
    import dask.array as da

    chunks = (spec.block_rows(chunk_bytes), *spec.shape[1:])
    t0 = time.perf_counter()
    with dask.config.set(scheduler="threads"), h5py.File(src, "r") as f:
        x = da.from_array(f[DATASET], chunks=chunks)  # type: ignore[no-untyped-call]
        if workload.out_dtype is None:
            low, high, mean, std = da.compute(x.min(), x.max(), x.mean(), x.std())  # type: ignore[no-untyped-call]
            stats = {"min": float(low), "max": float(high), "mean": float(mean), "std": float(std)}
            return {"seconds": time.perf_counter() - t0, "stats": stats}
        y = x.clip(0, None) if workload.name == "clip" else x.astype(workload.out_dtype)
        # chunks=None: a contiguous output like the input (to_hdf5 chunks by default).
        kwargs = {"chunks": None, **spec.create_kwargs()}
        da.to_hdf5(str(dst), f"/{DATASET}", y, **kwargs)  # type: ignore[no-untyped-call]
    return {"seconds": time.perf_counter() - t0, "chunks": list(chunks)}


def _pieces(start: int, stop: int, count: int) -> list[tuple[int, int]]:
    """``[start, stop)`` cut into ``count`` contiguous non-empty pieces (sizes differ by <= 1)."""
    edges = [start + (stop - start) * i // count for i in range(count + 1)]
    return list(itertools.pairwise(edges))


def h5py_mpio(
    spec: InputSpec, workload: Workload, src: Path, dst: Path | None, block_bytes: int
) -> Result:
    """Hand-written parallel h5py: each rank its rows, the same number of collective writes."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, nranks = comm.Get_rank(), comm.Get_size()
    shares = [_pieces(0, spec.rows, nranks)[r] for r in range(nranks)]
    start, stop = shares[rank]
    step = spec.block_rows(block_bytes)
    # One collective call per step on every rank, none empty (h5py skips empty selections).
    count = max(1, min(min(b - a for a, b in shares), -(-max(b - a for a, b in shares) // step)))
    pieces = _pieces(start, stop, count)
    buf = np.empty((max(b - a for a, b in pieces), *spec.shape[1:]))
    comm.Barrier()
    t0 = time.perf_counter()
    result: Result = {}
    with h5py.File(src, "r", driver="mpio", comm=comm) as fin:
        din = fin[DATASET]
        if workload.out_dtype is None:
            scratch = np.empty_like(buf)
            moments = Moments()
            for a, b in pieces:
                din.read_direct(buf, np.s_[a:b], np.s_[0 : b - a])
                moments.add(buf[: b - a], scratch[: b - a])
            total = Moments()
            for part in comm.allgather(moments):
                total.combine(part)
            result["stats"] = total.result()
        else:
            assert dst is not None
            out, kernel = _out_buffer(buf, workload), _kernel(workload)
            with h5py.File(dst, "w", driver="mpio", comm=comm) as fout:
                dout = fout.create_dataset(
                    DATASET,
                    spec.shape,
                    workload.out_dtype,
                    fill_time="never",
                    **spec.create_kwargs(),
                )
                for a, b in pieces:
                    n = b - a
                    din.read_direct(buf, np.s_[a:b], np.s_[0:n])
                    kernel(buf[:n], out[:n])
                    with dout.collective:
                        dout.write_direct(out, np.s_[0:n], np.s_[a:b])
    comm.Barrier()
    result["seconds"] = time.perf_counter() - t0
    result["vmhwm_kib"] = comm.gather(vmhwm_kib(), root=0)
    return result if rank == 0 else {}


def heat_run(spec: InputSpec, workload: Workload, src: Path, dst: Path | None) -> Result:
    """HeAT: load_hdf5(split=0), clip / astype / statistics, save_hdf5 (under mpirun)."""
    import heat as ht
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    comm.Barrier()
    t0 = time.perf_counter()
    x = ht.load_hdf5(str(src), DATASET, split=0)
    result: Result = {}
    if workload.out_dtype is None:
        result["stats"] = {
            "min": float(ht.min(x).item()),
            "max": float(ht.max(x).item()),
            "mean": float(ht.mean(x).item()),
            "std": float(ht.std(x).item()),
        }
    else:
        y = ht.clip(x, 0.0, None) if workload.name == "clip" else x.astype(ht.float32)
        ht.save_hdf5(y, str(dst), DATASET, mode="w", **spec.create_kwargs())
    comm.Barrier()
    result["seconds"] = time.perf_counter() - t0
    result["vmhwm_kib"] = comm.gather(vmhwm_kib(), root=0)
    return result if comm.Get_rank() == 0 else {}


METHODS = ("h5py", "rowloop", "dask", "h5py-mpio", "heat")


def main(argv: list[str] | None = None) -> int:
    """Run one method once and write its result file (rank 0 under mpirun)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("method", choices=METHODS)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    parser.add_argument("--spec", required=True, help="InputSpec fields as JSON")
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--block-mib", type=float, default=32.0)
    parser.add_argument("--rows-cap", type=int, default=0)
    parser.add_argument("--dask-chunk-mib", type=float, default=32.0)
    args = parser.parse_args(argv)
    fields = json.loads(args.spec)
    spec = InputSpec(**{**fields, "shape": tuple(fields["shape"])})
    workload = WORKLOADS[args.workload]
    if workload.out_dtype is not None and args.output is None:
        parser.error(f"workload {workload.name} needs --output")
    block = int(args.block_mib * 2**20)
    if args.method == "h5py":
        result = serial_h5py(spec, workload, args.input, args.output, block)
    elif args.method == "rowloop":
        result = rowloop(spec, workload, args.input, args.output, args.rows_cap)
    elif args.method == "dask":
        result = dask_array(
            spec, workload, args.input, args.output, int(args.dask_chunk_mib * 2**20)
        )
    elif args.method == "h5py-mpio":
        result = h5py_mpio(spec, workload, args.input, args.output, block)
    else:
        result = heat_run(spec, workload, args.input, args.output)
    if result:  # rank 0 (every rank has one for the serial methods)
        result.setdefault("rows_done", spec.rows)
        result.setdefault("vmhwm_kib", [vmhwm_kib()])
        if "stats" in result:
            result["stats"] = {k: float(v) for k, v in result["stats"].items()}
            if not all(math.isfinite(v) for v in result["stats"].values()):
                print(f"non-finite statistics: {result['stats']}", file=sys.stderr)
        args.result.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
