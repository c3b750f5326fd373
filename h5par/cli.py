"""Command line: argument parsing and dispatch only.

Exit statuses are the same on every rank: 0 success, 1 runtime failure, 2 usage or
validation error, 75 stopped cleanly and resumable.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence

from . import __version__
from .errors import H5ParError
from .sizes import format_size

__all__ = ["main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _rank() -> int:
    """Rank in COMM_WORLD if MPI is already initialised, else 0 (never initialises MPI)."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None or not mpi.Is_initialized() or mpi.Is_finalized():
        return 0
    return int(mpi.COMM_WORLD.Get_rank())


def _cmd_info(args: argparse.Namespace) -> int:
    from .info import environment, format_environment

    env = environment()
    if _rank() == 0:
        print(format_environment(env), flush=True)
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    result = run_demo(args.dir)
    if _rank() == 0:
        ranks = len(result.bytes_read)
        print(
            f"h5par demo: {len(result.datasets)} datasets cleaned on {ranks} rank(s) in {result.seconds:.2f} s"
        )
        print(f"  output: {result.output}")
        for r, (read, written) in enumerate(
            zip(result.bytes_read, result.bytes_written, strict=True)
        ):
            print(f"  rank {r}: read {format_size(read)}, wrote {format_size(written)}")
        for path, stats in result.reductions.items():
            print(f"  {path}: " + ", ".join(f"{op}={value:.6g}" for op, value in stats.items()))
    return EXIT_OK


_COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "info": (_cmd_info, "versions, MPI build of h5py, parallel-filter support, ranks"),
    "demo": (_cmd_demo, "write the demo input and clean it in parallel"),
}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors exit with status 2 from rank 0 only."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if _rank() == 0:
            self.print_usage(sys.stderr)
            print(f"h5par: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """The ``h5par`` argument parser."""
    parser = _Parser(prog="h5par", description="MPI-parallel HDF5 processing.")
    parser.add_argument("--version", action="version", version=f"h5par {__version__}")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--debug", action="store_true", help="full tracebacks on errors")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)
    for name, (_, summary) in _COMMANDS.items():
        verb = verbs.add_parser(name, help=summary, description=summary)
        if name == "demo":
            verb.add_argument(
                "dir", nargs="?", help="folder for the demo files (default: a new temporary one)"
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``h5par`` command line and return its exit status."""
    args = build_parser().parse_args(argv)
    handler, _ = _COMMANDS[args.verb]
    try:
        return handler(args)
    except H5ParError as exc:
        return _fail(exc, exc.exit_status, args.debug)
    except Exception as exc:  # an unexpected failure still ends in one line
        return _fail(exc, EXIT_FAILURE, args.debug)


def _fail(exc: Exception, status: int, debug: bool) -> int:
    if debug:
        traceback.print_exception(exc)
    from .errors import CollectiveError

    if _rank() == 0 or debug or not isinstance(exc, CollectiveError):
        text = str(exc) if isinstance(exc, H5ParError) else f"{type(exc).__name__}: {exc}"
        print(f"h5par: error: {text}", file=sys.stderr, flush=True)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
