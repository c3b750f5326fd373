"""What writing a new file costs on this machine: memory just freed against memory given back.

    python benchmarks/fresh_memory.py [--gib 2] [--rounds 4] [--pause 3] [--dir /tmp]

One process writes ``--gib`` GiB with ``pwrite`` from one reused 32 MiB buffer into a new
file, (a) right after deleting the previous such file and (b) after deleting it and waiting
``--pause`` seconds; interleaved, ``--rounds`` times, with wall and system time. On a VM that
hands freed memory back to its host, (b) pays for getting the pages again, and that cost is
system time of the writing process: ranks that write their own files share it, ranks that
write one file queue for it (see benchmarks/README.md, Measured results).
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import numpy as np


def write_new_file(path: Path, gib: float, pause: float, buffer: np.ndarray) -> tuple[float, float]:
    """Delete ``path``, wait ``pause`` s, write ``gib`` GiB into it: (wall s, system s)."""
    path.unlink(missing_ok=True)
    os.sync()
    time.sleep(pause)
    pieces = int(gib * 2**30) // buffer.nbytes
    before = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for i in range(pieces):
            os.pwrite(fd, buffer, i * buffer.nbytes)
    finally:
        os.close(fd)
    wall = time.perf_counter() - start
    return wall, resource.getrusage(resource.RUSAGE_SELF).ru_stime - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--pause", type=float, default=3.0)
    parser.add_argument("--dir", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    buffer = np.random.default_rng(0).standard_normal(4 << 20)  # 32 MiB, touched
    path = args.dir / f"h5par-fresh-memory-{os.getpid()}.bin"
    try:
        for r in range(args.rounds):
            now = write_new_file(path, args.gib, 0.0, buffer)
            later = write_new_file(path, args.gib, args.pause, buffer)
            print(
                f"round {r + 1}: {args.gib:g} GiB right after a delete {now[0]:.2f} s "
                f"(system {now[1]:.2f} s) | after {args.pause:g} s {later[0]:.2f} s "
                f"(system {later[1]:.2f} s)",
                flush=True,
            )
    finally:
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
