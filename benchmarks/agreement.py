"""Micro-benchmarks for docs/scaling.md: an agreement, a small dataset, a small file.

    mpirun -n N python -m mpi4py benchmarks/agreement.py [--repeat 2000] [--json FILE]

Run under ``mpirun`` at each rank count to compare (one process also works without it).
Rank 0 prints one JSON line with medians over ``--repeat`` repetitions, in microseconds:

- ``agreement``: an empty :func:`h5par.parallel.agreement.collective_errors` block, the
  agreement every step of a sweep ends in (a non-blocking barrier polled, then an
  allgather only when a rank failed);
- ``barrier`` and ``allreduce``: MPI's own, for scale;
- ``journal_checkpoint``: one appended journal line (:meth:`Journal.checkpoint`), rank 0;
- ``lock``: taking and releasing a work folder's lock (:func:`h5par.engine.lock.take`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mpi4py import MPI

from h5par.engine.journal import Journal
from h5par.engine.lock import take
from h5par.parallel.agreement import collective_errors


def _median_us(repeat: int, step: Callable[[], object], comm: MPI.Comm) -> float:
    comm.Barrier()
    times = []
    for _ in range(repeat):
        tick = time.perf_counter()
        step()
        times.append(time.perf_counter() - tick)
    comm.Barrier()
    return 1e6 * statistics.median(times)


def _agreement(comm: MPI.Comm) -> None:
    with collective_errors(comm, "benchmark"):
        pass


def main(argv: list[str] | None = None) -> int:
    """Measure, print one JSON line on rank 0 (and write it to ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    comm = MPI.COMM_WORLD
    found = {
        "ranks": comm.Get_size(),
        "agreement": _median_us(args.repeat, lambda: _agreement(comm), comm),
        "barrier": _median_us(args.repeat, comm.Barrier, comm),
        "allreduce": _median_us(args.repeat, lambda: comm.allreduce(1), comm),
    }
    if comm.Get_rank() == 0:
        with tempfile.TemporaryDirectory() as folder:
            journal = Journal(Path(folder), "f", units={f"/d{i}": 1 for i in range(args.repeat)})
            journal.save()
            paths = iter(journal.units)

            def checkpoint() -> None:
                journal.finish(next(paths), [0])
                journal.checkpoint()

            found["journal_checkpoint"] = _median_us(args.repeat, checkpoint, MPI.COMM_SELF)
            work = Path(folder) / ".out.h5.h5par"
            found["lock"] = _median_us(
                min(args.repeat, 500), lambda: take(work).release(), MPI.COMM_SELF
            )
        text = json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in found.items()})
        print(text)
        if args.json is not None:
            args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
