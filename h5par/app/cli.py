"""Command line: argument parsing and dispatch only.

Exit statuses are the same on every rank: 0 success, 1 runtime failure, 2 usage or
validation error, 75 stopped cleanly and resumable.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from h5par.core.sizes import format_size
from h5par.errors import H5ParError
from h5par.parallel.comm import world
from h5par.version import __version__

__all__ = ["main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_STOPPED, EXIT_INTERRUPTED = 0, 1, 2, 75, 130
MAX_PLAN_RANKS = 1 << 20  # `plan --ranks`: more would only exhaust memory listing shares
MAX_LISTED_RANKS = 64  # `plan` totals: more ranks are summed up in one line


def _rank() -> int:
    return world()[0]


def _emit(text: str) -> None:
    """Print ``text`` on stdout; a reader that has gone (``h5par ls f | head``) is no error.

    Python's recipe for a closed pipe (the ``signal`` module's documentation): stdout is
    pointed at ``os.devnull``, so that nothing written later fails, the interpreter's
    final flush included. The verb goes on (a ``--report`` is still written) and ends
    with its own exit status; the other ranks see nothing of it.
    """
    try:
        print(text, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _print_once(text: str) -> None:
    """Print ``text`` from rank 0, in an agreement: a failure ends every rank alike."""
    from h5par.parallel.agreement import collective_errors
    from h5par.parallel.comm import resolve_comm

    comm = resolve_comm()
    with collective_errors(comm, "output"):
        if comm.Get_rank() == 0:
            _emit(text)


def _cmd_info(args: argparse.Namespace) -> int:
    from h5par.app.info import environment, format_environment

    _print_once(format_environment(environment()))
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from h5par.app.demo import run_demo
    from h5par.app.report import summary_text

    result = run_demo(args.dir)
    (done,) = result.files
    folder = Path(done.input).parent
    where = (
        f"h5par demo: input {done.input}, job {folder / 'demo_job.toml'}, output {done.result.output}\n"
        f"  rerun it: h5par run {folder / 'demo_job.toml'} --overwrite; list the output: "
        f"h5par ls {done.result.output}\n"
        "  the jobs in the repository's jobs/ folder read demo/demo_input.h5: "
        "`h5par demo demo` in its root, then `h5par run jobs/NAME.toml`"
    )
    _print_once(where + "\n" + summary_text(result))
    return EXIT_OK


def _cmd_kernels(args: argparse.Namespace) -> int:
    from h5par.app.catalog import kernel_catalog

    _print_once(kernel_catalog())
    return EXIT_OK


def _cmd_init(args: argparse.Namespace) -> int:
    from h5par.app.init import write_job

    if _rank() == 0:
        path = write_job(args.job, args.input, overwrite=args.overwrite)
        _emit(f"h5par init: wrote {path}; check it with `h5par plan {path}`")
    return EXIT_OK


def _cmd_ls(args: argparse.Namespace) -> int:
    from h5par.hdf5.listing import list_file

    if _rank() == 0:
        _emit(list_file(args.file, attributes=not args.no_attributes, everything=args.all))
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from h5par.app.report import check_report, summary_text, write_report
    from h5par.engine.batch import run
    from h5par.parallel.agreement import collective_errors
    from h5par.parallel.comm import resolve_comm
    from h5par.parallel.guard import stop_signals

    comm = resolve_comm()
    with collective_errors(comm, "validate"):  # like outputs: before any work, on every rank
        if args.report and comm.Get_rank() == 0:
            check_report(args.report)
    with stop_signals():
        result = run(
            args.job,
            overrides=args.set,
            overwrite=args.overwrite,
            quiet=getattr(args, "quiet", False),
            resume=args.resume,
            comm=comm,
            how_to_overwrite="pass --overwrite",
            command=args.command,
        )
    with collective_errors(comm, "report"):  # rank 0 writes: every rank ends as it does
        if comm.Get_rank() == 0:
            _emit(summary_text(result, verbose=args.verbose))
            if args.report:
                write_report(result, args.report)
    return EXIT_OK


def _cmd_consolidate(args: argparse.Namespace) -> int:
    from h5par.core.sizes import format_size
    from h5par.engine.runner import consolidate
    from h5par.parallel.guard import stop_signals

    with stop_signals():
        result = consolidate(
            args.master,
            args.out,
            overwrite=args.overwrite,
            memory=args.memory,
            how_to_overwrite="pass --overwrite",
        )
    _print_once(
        f"h5par consolidate: {args.master} -> {args.out}: {len(result.datasets)} dataset(s), "
        f"{format_size(sum(result.bytes_written))} written by {len(result.bytes_written)} "
        f"rank(s) in {result.seconds:.2f} s"
    )
    return EXIT_OK


def _cmd_plan(args: argparse.Namespace) -> int:
    import dataclasses

    from h5par.engine.batch import plan_job
    from h5par.engine.jobs import load_job
    from h5par.errors import JobProblemsError

    if _rank() != 0:
        return EXIT_OK
    job = load_job(args.job, args.set)
    if args.overwrite:
        job = dataclasses.replace(job, overwrite=True)
    try:
        entries = plan_job(job, args.ranks, "pass --overwrite")
    except JobProblemsError as exc:  # one line per problem, as run would refuse the first
        for problem in exc.problems:
            _fail(H5ParError(problem), EXIT_USAGE, False)
        return EXIT_USAGE
    if args.json:
        _emit(json.dumps(entries, indent=2))
    else:
        _emit(format_plan(entries, args.ranks))
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    from h5par.app.status import job_status
    from h5par.engine.jobs import load_job

    if _rank() == 0:
        _emit("\n".join(job_status(load_job(args.job, args.set), args.job)))
    return EXIT_OK


def _cmd_submit(args: argparse.Namespace) -> int:
    from h5par.app.slurm import batch_script, submit, submit_options
    from h5par.engine.jobs import load_job

    if _rank() != 0:
        return EXIT_OK
    options = submit_options(
        args.job,
        nodes=args.nodes,
        ntasks=args.ntasks,
        time=args.time,
        partition=args.partition,
        account=args.account,
        launcher=args.launcher,
        stop_before=args.stop_before,
        run_args=[item for pair in args.set for item in ("--set", pair)],
    )
    load_job(args.job, args.set)  # a bad job fails here, not after waiting in the queue
    _emit(batch_script(options) if args.dry_run else submit(options, args.job))
    return EXIT_OK


def format_plan(entries: list[dict[str, Any]], nranks: int) -> str:
    """The text ``h5par plan`` prints: each file, its datasets and shares, per-rank totals."""
    skipped = sum(1 for entry in entries if entry.get("skipped"))
    done = f", {skipped} done by an earlier run (skipped)" if skipped else ""
    lines = [f"plan for {nranks} rank(s): {len(entries)} file(s){done}"]
    folders = list(dict.fromkeys(f for entry in entries for f in entry.get("new_folders", [])))
    if folders:
        lines.append(f"creates {len(folders)} output folder(s): {', '.join(folders)}")
    for entry in entries:
        lines += _plan_file(entry)
    lines += _plan_totals(entries, nranks)
    return "\n".join(lines)


def _plan_file(entry: dict[str, Any]) -> list[str]:
    """A file's lines of the plan."""
    output = entry["output"] or "(statistics only)"
    if entry.get("skipped"):
        return [f"{entry['input']} -> {output}  [done by an earlier run: skipped]"]
    lines = [f"{entry['input']} -> {output}  [{entry['parallelism']}]"]
    for path, info in entry["datasets"].items():
        made = f"{info['dtype']}{info['shape']} -> {info['out_dtype']}{info['out_shape']}"
        if "formula" in info:  # a derived dataset: new in the output
            made = f"new, = {info['formula']}: {made}"
        lines.append(f"  {path}: {made}")
        if info.get("note"):
            lines.append(f"    note: {info['note']}")
        for share in info["ranks"]:
            region = (
                "nothing"
                if share["region"] is None
                else "[" + ", ".join(f"{a}:{b}" for a, b in share["region"]) + "]"
            )
            lines.append(
                f"    rank {share['rank']}: {region}  {format_size(share['bytes'])} in {share['steps']} step(s)"
                + _from_files(share.get("files"))
            )
    return lines


def _from_files(files: list[str] | None) -> str:
    """Which files of a series a share reads (``from 3 file(s): a.nc ... c.nc``)."""
    if not files:
        return ""
    names = files[0] if len(files) == 1 else f"{files[0]} ... {files[-1]}"
    return f" from {len(files)} file(s): {names}"


def _plan_totals(entries: list[dict[str, Any]], nranks: int) -> list[str]:
    """Per rank: the files it takes part in (alone or shared), bytes and steps."""
    files, alone = [0] * nranks, [0] * nranks
    nbytes, steps = [0] * nranks, [0] * nranks
    for entry in entries:
        ranks = entry.get("ranks", [])
        for r in ranks:
            files[r] += 1
            alone[r] += len(ranks) == 1
        for info in entry["datasets"].values():
            for share in info["ranks"]:
                nbytes[share["rank"]] += share["bytes"]
                steps[share["rank"]] += share["steps"]
    lines = ["per rank:"]
    for r in range(min(nranks, MAX_LISTED_RANKS)):
        lines.append(
            f"  rank {r}: {files[r]} file(s) ({alone[r]} alone), "
            f"{format_size(nbytes[r])} in {steps[r]} step(s)"
        )
    if nranks > MAX_LISTED_RANKS:
        lines.append(f"  ... {nranks - MAX_LISTED_RANKS} more rank(s) (--json lists them all)")
    return lines


#: The smallest useful job file (``h5par run --help`` ends with it).
MINIMAL_JOB = """\
a minimal job file (TOML; `h5par kernels` lists the kernels, `h5par init` writes one):

  version = 1
  [input]
  path = "run/snap_*.h5"            # a file, a glob or a list, relative to the job file
  [output]
  path = "clean/{stem}.h5"          # {stem} {name} {index} of each input
  [[kernels]]
  name = "clip"
  min = 0.0
"""


_COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "info": (_cmd_info, "versions, MPI build of h5py, parallel-filter support, ranks"),
    "demo": (_cmd_demo, "write the demo input and job, and run it"),
    "run": (_cmd_run, "run a job file on the ranks h5par was launched with"),
    "kernels": (_cmd_kernels, "list every kernel with its parameters and their defaults"),
    "init": (_cmd_init, "write a commented job file for the files a glob finds"),
    "ls": (_cmd_ls, "list groups, datasets, attributes and links of a file (like h5ls -r -v)"),
    "plan": (_cmd_plan, "validate a job and print its decomposition without reading data"),
    "status": (_cmd_status, "where each file of a job stands: done, running, stopped, not started"),
    "submit": (_cmd_submit, "write a SLURM batch script next to a job and submit it (sbatch)"),
    "consolidate": (_cmd_consolidate, "turn a subfiled output into one ordinary file, in parallel"),
}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors exit with status 2 from rank 0 only."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if _rank() == 0:
            self.print_usage(sys.stderr)
            print(f"h5par: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _job_arguments(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("job", help="the job file (TOML)")
    verb.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a job key, e.g. --set input.path=x.h5 (repeatable)",
    )


def _verb_arguments(name: str, verb: argparse.ArgumentParser) -> None:
    if name == "demo":
        verb.add_argument("dir", nargs="?", help="folder for the demo files (default: a new one)")
    if name in ("run", "plan", "status", "submit"):
        _job_arguments(verb)
    if name in ("run", "plan"):
        verb.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    if name == "run":
        verb.add_argument(
            "--verbose", action="store_true", help="list every file in the summary (above 10)"
        )
        verb.add_argument(
            "--resume",
            action="store_true",
            help="continue a stopped run (an error when there is none; without it a stopped "
            "run of the same job is continued anyway)",
        )
        verb.add_argument("--report", metavar="FILE.json", help="write the summary as JSON")
    if name == "consolidate":
        verb.add_argument("master", help="the output file of a subfiled run")
        verb.add_argument("out", help="the ordinary file to write")
        verb.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
        verb.add_argument("--memory", default="256MiB", help="per-rank memory (default 256MiB)")
    if name == "init":
        verb.add_argument("job", help="the job file to write (JOB.toml)")
        verb.add_argument(
            "--input",
            required=True,
            metavar="GLOB",
            help="the inputs, relative to the job's folder",
        )
        verb.add_argument("--overwrite", action="store_true", help="replace JOB if it exists")
    if name == "ls":
        verb.add_argument("file", help="an HDF5 file")
        verb.add_argument("--no-attributes", action="store_true", help="leave attributes out")
        verb.add_argument(
            "--all",
            action="store_true",
            help="also the bookkeeping attributes of dimension scales and netCDF-4 "
            "(CLASS, NAME, DIMENSION_LIST, REFERENCE_LIST, _Netcdf4Dimid, ...) and netCDF's "
            "dimension-only placeholders",
        )
    if name == "submit":
        _submit_arguments(verb)
    if name == "plan":
        verb.add_argument("--ranks", type=int, help="plan for N ranks (default: as launched)")
        verb.add_argument("--json", action="store_true", help="print the plan as JSON")


def _submit_arguments(verb: argparse.ArgumentParser) -> None:
    # Values stay strings: h5par.app.slurm checks them and names what is valid in one line.
    verb.add_argument("--nodes", metavar="N", help="nodes (default 1)")
    verb.add_argument("--ntasks", metavar="N", help="MPI ranks (default: SLURM's, one per node)")
    verb.add_argument("--time", metavar="HH:MM:SS", help="time limit (default: the partition's)")
    verb.add_argument("--partition", metavar="P", help="SLURM partition")
    verb.add_argument("--account", metavar="A", help="SLURM account")
    verb.add_argument("--launcher", default="mpirun", metavar="srun|mpirun", help="default mpirun")
    verb.add_argument(
        "--stop-before",
        metavar="SECONDS",
        help="SLURM sends USR1 this long before the time limit: h5par stops at a block "
        "boundary and the job requeues itself (default 120)",
    )
    verb.add_argument(
        "--dry-run", action="store_true", help="print the batch script; write and submit nothing"
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``h5par`` argument parser (global flags before or after the verb)."""
    flags = _Parser(add_help=False)
    flags.add_argument(
        "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress output"
    )
    flags.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="full tracebacks"
    )
    parser = _Parser(prog="h5par", description="MPI-parallel HDF5 processing.", parents=[flags])
    parser.add_argument("--version", action="version", version=f"h5par {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)
    for name, (_, summary) in _COMMANDS.items():
        verb = verbs.add_parser(
            name,
            help=summary,
            description=summary,
            parents=[flags],
            epilog=MINIMAL_JOB if name == "run" else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _verb_arguments(name, verb)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``h5par`` command line and return its exit status."""
    args = build_parser().parse_args(argv)
    args.command = shlex.join(["h5par", *(sys.argv[1:] if argv is None else argv)])
    if getattr(args, "ranks", 0) is None:
        args.ranks = world()[1]
    elif not 1 <= getattr(args, "ranks", 1) <= MAX_PLAN_RANKS:  # each rank's share is listed
        build_parser().error(f"--ranks {args.ranks}: expected 1..{MAX_PLAN_RANKS} ranks")
    handler, _ = _COMMANDS[args.verb]
    # A full disk or a file-size limit must be an error HDF5 reports, not a silent death.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    status = _dispatch(handler, args)
    return _rank0_status(status) if args.verb in _RANK0_VERBS else status


#: Verbs only rank 0 carries out: the other ranks exit with rank 0's status.
_RANK0_VERBS = ("init", "ls", "plan", "status", "submit")


def _rank0_status(status: int) -> int:
    """Rank 0's exit status, on every rank of a job launched with several (collective)."""
    if world()[1] == 1:
        return status
    from h5par.parallel.comm import bcast, resolve_comm

    return bcast(resolve_comm(), status)


def _dispatch(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run the verb's handler; every failure ends in one line and its exit status."""
    try:
        return handler(args)
    except H5ParError as exc:
        return _fail(exc, exc.exit_status, getattr(args, "debug", False))
    except KeyboardInterrupt:  # one process run by hand: the work folder stays, rerun resumes
        print("h5par: interrupted; rerun the same job to resume", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Exception as exc:  # an unexpected failure still ends in one line
        return _fail(exc, EXIT_FAILURE, getattr(args, "debug", False))


def _fail(exc: Exception, status: int, debug: bool) -> int:
    if debug:
        traceback.print_exception(exc)
    if _rank() == 0 or debug or not getattr(exc, "agreed", False):
        text = str(exc) if isinstance(exc, H5ParError) else f"{type(exc).__name__}: {exc}"
        text = text.replace("\r", "\\r").replace("\n", "\\n")  # a name may hold newlines
        prefix = "h5par:" if status == EXIT_STOPPED else "h5par: error:"
        print(f"{prefix} {text}", file=sys.stderr, flush=True)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
