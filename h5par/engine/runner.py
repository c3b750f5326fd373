"""Where files, ranks and kernels meet: ``apply`` a kernel chain to datasets.

1. *validate* (every rank, pure): kernels, options, paths.
2. *inspect* (rank 0 reads metadata, broadcasts a picklable :class:`~h5par.engine.plan.Plan`).
3. *execute* (:mod:`h5par.engine.execute`): the work folder and its journal, the collective data
   pass, the output renamed into place.

Each phase ends in an agreement on failure (``collective_errors``).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py

from h5par.core.layout import OutputOptions
from h5par.core.sizes import parse_size
from h5par.core.slicing import checked
from h5par.core.units import Target
from h5par.engine.execute import execute
from h5par.engine.folders import check_output_folder, make_output_folder
from h5par.engine.inspection import inspect_input
from h5par.engine.plan import Work
from h5par.engine.workfolder import check_input_settled
from h5par.errors import H5ParError, UsageError
from h5par.hdf5.io import DRIVERS, SERIAL_H5PY_FIX
from h5par.hdf5.subfiles import parts_folder
from h5par.kernels import Chain, Kernel
from h5par.parallel import faults
from h5par.parallel.agreement import collective_errors
from h5par.parallel.comm import allgather, bcast, private, rank, resolve_comm, size
from h5par.parallel.guard import DEFAULT_WATCHDOG, guarded

if TYPE_CHECKING:
    from h5par.parallel.comm import Comm

__all__ = ["Result", "Target", "apply", "consolidate", "inspect"]


@dataclasses.dataclass(frozen=True)
class Result:
    """What a run did.

    Attributes
    ----------
    output : str or None
        The file written (the input for in-place runs; None when only reducing).
    datasets : list of str
        Processed dataset paths.
    reductions : dict
        ``{dataset path: {op: value}}`` of every ``reduce`` kernel.
    bytes_read, bytes_written : list of int
        Raw bytes each rank moved, by rank.
    seconds : float
        Wall time of the run on rank 0.
    busy_seconds : list of float
        Time each rank spent reading, transforming and writing (waits excluded).
    decomposition : dict
        ``{dataset path: [{"rank", "region", "steps", "bytes"}, ...]}``: what each rank did
        (the same structure :func:`h5par.engine.plan.share` predicts).
    resumed_units : int
        Units an earlier, stopped run of the same job had finished (0: a fresh run).
    """

    output: str | None
    datasets: list[str]
    reductions: dict[str, dict[str, Any]]
    bytes_read: list[int]
    bytes_written: list[int]
    seconds: float
    busy_seconds: list[float] = dataclasses.field(default_factory=list)
    decomposition: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    resumed_units: int = 0


def apply(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    kernels: Iterable[Mapping[str, Any] | Kernel] = (),
    datasets: Sequence[str] | str | None = None,
    *,
    in_place: bool = False,
    overwrite: bool = False,
    memory: str | int = "256MiB",
    options: OutputOptions | None = None,
    comm: Comm | None = None,
    driver: str = "auto",
    provenance: Mapping[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
    respect_fill_value: bool = True,
    resume: bool = False,
    watchdog: float = DEFAULT_WATCHDOG,
    select: Mapping[str, str] | None = None,
    materialize: bool = False,
    **driver_options: Any,
) -> Result:
    """Apply a kernel chain to datasets of an HDF5 file. Collective over ``comm``.

    Parameters
    ----------
    input : path
        The HDF5 file to read.
    output : path, optional
        The file to write: a new file keeping the whole hierarchy, processed datasets
        replaced. It appears under its name only when complete. Omit it with ``in_place``,
        or when the chain only reduces.
    kernels : sequence of dict or Kernel
        The chain, e.g. ``[{"name": "clip", "min": 0}]``; empty copies the data.
    datasets : glob or list of globs, optional
        Datasets to process (``"/*/temperature"``); default: every dataset.
    in_place : bool
        Write results back into ``input`` (same dtype and shape only).
    overwrite : bool
        Replace an existing ``output`` (only once the new one is complete).
    memory : str or int
        Per-rank working-memory budget (``"256MiB"``).
    options : OutputOptions, optional
        Chunks, compression, shuffle, fletcher32, fill value of output datasets.
    comm : mpi4py.MPI.Comm, optional
        Ranks taking part (default ``COMM_WORLD``).
    driver : str
        Driver for reading the input (``"auto"``, ``"family"``, ``"core"``...).
    provenance : mapping of str to str, optional
        Attributes written on the output's root group (``h5par run`` records its version,
        the job and the time).
    progress : callable, optional
        Called on rank 0 with the bytes all ranks read in each step (for progress bars).
    respect_fill_value : bool
        Elements equal to a dataset's ``_FillValue`` attribute (CF/netCDF) pass through
        kernels unchanged (converted by ``astype``) and are left out of reductions.
    resume : bool
        Require continuing a stopped or killed run of the same job (a UsageError when there
        is none). Without it such a run is continued when there is one, and a new run
        starts otherwise.
    watchdog : float
        Seconds without progress after which a rank counts as blocked and the job is
        aborted with a message naming it (0: never).
    select : mapping of str to str, optional
        ``{dataset glob: selection}`` in numpy's index syntax (``"4:8:2"``, ``"0, ..., 0"``,
        ``"[1, 2, 7]"``): those datasets are read through the selection and the output
        dataset has the selected shape.
    materialize : bool
        Write the input's virtual datasets as ordinary datasets (what :func:`consolidate`
        does); otherwise untouched virtual datasets are copied as virtual datasets.
    **driver_options
        Options of that driver (``memb_size`` for family).

    Returns
    -------
    Result
        Identical on every rank.

    Raises
    ------
    UsageError
        Bad arguments (on every rank, before anything is opened for writing).
    CollectiveError
        A failure on any rank, raised on every rank.
    """
    comm = resolve_comm(comm)
    private(comm)  # before any file is opened: see h5par.parallel.comm.private
    faults.reset()
    start = time.perf_counter()
    with guarded(watchdog):
        with collective_errors(comm, "validate", fault="validate"):
            job = _validate(
                input, output, kernels, datasets, in_place, overwrite, memory, options, driver,
                driver_options, size(comm), dict(provenance or {}), progress, respect_fill_value,
            )  # fmt: skip
            job = dataclasses.replace(
                job,
                resume=resume,
                select=checked(select or {}, "select {!r}"),
                materialize=materialize,
            )
        with collective_errors(comm, "inspect", fault="inspect"):
            if rank(comm) == 0:
                check_input_settled(job)  # not half updated by an in-place run
            plan = inspect_input(job) if rank(comm) == 0 else None
            if rank(comm) == 0 and job.output is not None:
                make_output_folder(job.output.parent)  # validated: before the data pass
        plan = bcast(comm, plan)
        assert plan is not None
        reductions, record = execute(job, plan, comm)
    records = allgather(comm, record)
    return Result(
        output=None if job.destination is None else str(job.destination),
        datasets=[t.path for t in plan.targets],
        reductions=reductions,
        bytes_read=[r.read for r in records],
        bytes_written=[r.written for r in records],
        seconds=bcast(comm, time.perf_counter() - start),
        busy_seconds=[r.busy for r in records],
        decomposition={t.path: [r.shares[t.path] for r in records] for t in plan.targets},
        resumed_units=records[0].resumed,
    )


def consolidate(
    output: str | os.PathLike[str],
    into: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    memory: str | int = "256MiB",
    comm: Comm | None = None,
    progress: Callable[[int], None] | None = None,
    watchdog: float = DEFAULT_WATCHDOG,
) -> Result:
    """Turn a subfiled output into one ordinary file, in parallel. Collective over ``comm``.

    Every virtual dataset of ``output`` is read through its parts and written as an
    ordinary dataset of ``into`` (with the chunks and filters of its parts); the rest of
    the hierarchy is copied as in any run. The subfiled output is left as it is.
    """
    return apply(
        output, into, [], overwrite=overwrite, memory=memory, comm=comm, progress=progress,
        watchdog=watchdog, materialize=True,
    )  # fmt: skip


def inspect(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    kernels: Iterable[Mapping[str, Any] | Kernel] = (),
    datasets: Sequence[str] | str | None = None,
    *,
    in_place: bool = False,
    overwrite: bool = False,
    memory: str | int = "256MiB",
    options: OutputOptions | None = None,
    nranks: int = 1,
    driver: str = "auto",
    respect_fill_value: bool = True,
    select: Mapping[str, str] | None = None,
    **driver_options: Any,
) -> list[Target]:
    """Validate like :func:`apply` and list the datasets it would process (one process).

    Reads metadata only; with :func:`share` this is what ``h5par plan`` prints.
    """
    job = _validate(
        input, output, kernels, datasets, in_place, overwrite, memory, options, driver,
        driver_options, nranks, {}, None, respect_fill_value,
    )  # fmt: skip
    return inspect_input(
        dataclasses.replace(job, select=checked(select or {}, "select {!r}"))
    ).targets


def _validate(
    input: Any,
    output: Any,
    kernels: Iterable[Mapping[str, Any] | Kernel],
    datasets: Sequence[str] | str | None,
    in_place: bool,
    overwrite: bool,
    memory: str | int,
    options: OutputOptions | None,
    driver: str,
    driver_options: dict[str, Any],
    nranks: int,
    provenance: dict[str, str],
    progress: Callable[[int], None] | None,
    respect_fill_value: bool,
) -> Work:
    try:
        budget = parse_size(memory)
    except ValueError as exc:
        raise UsageError(f"memory: {exc}") from None
    chain = Chain.from_specs(kernels)
    options = options or OutputOptions()
    if driver != "auto" and driver not in DRIVERS:
        raise UsageError(f"input driver = {driver!r} (valid: auto, {', '.join(DRIVERS)})")
    source = Path(input)
    if not source.is_file() and driver != "family":
        raise UsageError(f"input {str(source)!r} does not exist or is not a file")
    target = None if output is None else Path(output)
    if in_place and target is not None:
        raise UsageError("give either an output path or in_place = true, not both")
    if in_place and any(k.has_halo for k in chain.kernels):
        raise UsageError(
            "in-place runs cannot use kernels with neighbours (a block's halo would be read "
            "after its neighbour was overwritten); write an output file"
        )
    if in_place and options.subfiled:
        raise UsageError("output.layout = 'subfiled' needs an output file, not in_place")
    if in_place and options.changes_layout:
        raise UsageError(
            "in-place runs keep the layout: chunks/compression/shuffle/fletcher32/fillvalue need an output file"
        )
    if not in_place and target is None and not chain.reducers:
        raise UsageError(
            "nothing to write: give an output path, in_place = true, or a reduce kernel"
        )
    if target is not None:
        _check_output(source, target, overwrite)
        if options.subfiled:
            _check_parts(parts_folder(target), overwrite)
    writes = in_place or target is not None
    if writes and nranks > 1 and not h5py.get_config().mpi and not options.subfiled:
        raise H5ParError(SERIAL_H5PY_FIX.format(n=nranks))
    if isinstance(datasets, str):
        datasets = [datasets]
    return Work(
        source,
        target,
        in_place,
        chain,
        None if datasets is None else list(datasets),
        budget,
        options,
        overwrite,
        driver,
        dict(driver_options),
        nranks,
        provenance,
        progress,
        respect_fill_value,
    )


def _check_output(source: Path, target: Path, overwrite: bool) -> None:
    if target.resolve() == source.resolve():
        raise UsageError(
            f"output {str(target)!r} is the input: use in_place = true to write into it"
        )
    if os.path.isdir(target):  # os.replace cannot put the finished output there
        raise UsageError(f"output {str(target)!r} is a folder (valid: the path of a file)")
    if os.path.exists(target) and not overwrite:  # False, not OSError, for a name too long
        raise UsageError(
            f"output {str(target)!r} exists (set overwrite = true or pass --overwrite to replace it)"
        )
    check_output_folder(target.parent)  # missing folders are created after validation


def _check_parts(parts: Path, overwrite: bool) -> None:
    """A subfiled output's parts folder is replaced at the end: only a folder, with overwrite."""
    if os.path.lexists(parts) and (os.path.islink(parts) or not os.path.isdir(parts)):
        raise UsageError(f"output parts folder {str(parts)!r} exists and is not a folder")
    if os.path.lexists(parts) and not overwrite:
        raise UsageError(
            f"output parts folder {str(parts)!r} exists (set overwrite = true or pass "
            "--overwrite to replace it)"
        )
