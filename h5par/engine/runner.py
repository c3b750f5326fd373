"""Where files, ranks and kernels meet: ``apply`` a kernel chain to datasets.

1. *validate* (every rank, pure): kernels, options, paths (:func:`h5par.engine.config.configure`).
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
from typing import TYPE_CHECKING, Any

from h5par.core.layout import OutputOptions
from h5par.engine.config import Work, configure
from h5par.engine.execute import execute
from h5par.engine.folders import make_output_folder
from h5par.engine.inspection import inspect_input, inspect_share
from h5par.engine.plan import Plan
from h5par.engine.shared import check_shared
from h5par.engine.workfolder import check_input_settled
from h5par.kernels import Kernel
from h5par.parallel import faults
from h5par.parallel.agreement import collective_errors
from h5par.parallel.comm import allgather, bcast, private, rank, resolve_comm, size
from h5par.parallel.guard import DEFAULT_WATCHDOG, guarded

if TYPE_CHECKING:
    from h5par.parallel.comm import Comm

__all__ = ["Result", "apply", "consolidate", "plan_together", "run_work"]


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
    attrs: Mapping[str, Mapping[str, Any]] | None = None,
    delete_attrs: Mapping[str, Sequence[str]] | None = None,
    history: str | None = None,
    derived: Sequence[Mapping[str, Any]] = (),
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
        Datasets to process (``"/*/temperature"``); default: every dataset that is not a
        dimension scale (coordinates are copied untouched).
    in_place : bool
        Write results back into ``input`` (same dtype and shape only).
    overwrite : bool
        Replace an existing ``output`` (only once the new one is complete).
    memory : str or int
        Per-rank working-memory budget (``"256MiB"``).
    options : OutputOptions, optional
        Chunks, compression, shuffle, fletcher32, fill value of output datasets, and
        whether the output keeps what is not selected (``OutputOptions(unselected="drop")``
        writes only the selected datasets and the dimension scales they use).
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
    attrs : mapping, optional
        Attributes to set after processing, ``{object path: {name: value}}`` (``"/"`` is
        the root); values are strings, integers, numbers or lists of one of them
        (``_FillValue`` and ``valid_*`` of a dataset take its dtype).
    delete_attrs : mapping, optional
        Attributes to delete, ``{object path: [name, ...]}``.
    history : str, optional
        A line put in front of the output's root ``history`` attribute (CF's audit trail;
        :func:`h5par.core.attributes.history_line` makes one with a timestamp).
    derived : sequence of dict, optional
        New datasets computed from others, as a job's ``[[derived]]`` tables:
        ``{"path": "/speed", "expression": "sqrt(u**2 + v**2)", "inputs": {"u": "/u",
        "v": "/v"}}`` (other files relative to the current folder, ``"clim.h5:/T"``).
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
    return _apply(
        comm, watchdog, input=input, output=output, kernels=kernels, datasets=datasets,
        in_place=in_place, overwrite=overwrite, memory=memory, options=options, driver=driver,
        driver_options=driver_options, provenance=provenance, progress=progress,
        respect_fill_value=respect_fill_value, resume=resume, select=select,
        materialize=materialize, attrs=attrs, delete_attrs=delete_attrs, history=history,
        derived=derived,
    )  # fmt: skip


def _apply(comm: Comm | None, watchdog: float, **settings: Any) -> Result:
    """Validate ``settings`` (:func:`~h5par.engine.config.configure`'s) and run. Collective."""
    comm = resolve_comm(comm)
    private(comm)  # before any file is opened: see h5par.parallel.comm.private
    faults.reset()
    with guarded(watchdog):
        with collective_errors(comm, "validate", fault="validate"):
            work = configure(nranks=size(comm), **settings)
        what = "input" if work.in_place else "output"
        outputs = {} if work.destination is None else {work.destination.parent: what}
        check_shared([work.input, *{f for d in work.derived for f in d.files}], outputs, comm)
        return run_work(work, comm)


def run_work(work: Work, comm: Comm, plan: Plan | None = None) -> Result:
    """Run validated ``work``: inspect the input (unless ``plan`` is given), execute, gather.

    Collective over ``comm``; ``plan`` (:func:`plan_together` of this very ``work``) is
    given on every rank or on none.
    """
    faults.reset()
    start = time.perf_counter()
    with collective_errors(comm, "inspect", fault="inspect"):
        if rank(comm) == 0:
            check_input_settled(work)  # not half updated by an in-place run
    plan = plan or plan_together(work, comm)
    with collective_errors(comm, "output folder"):
        if rank(comm) == 0 and work.output is not None:
            make_output_folder(work.output.parent)  # validated: before the data pass
    reductions, record = execute(work, plan, comm)
    records = allgather(comm, record)
    return Result(
        output=None if work.destination is None else str(work.destination),
        datasets=[t.path for t in [*plan.targets, *plan.derived]],
        reductions=reductions,
        bytes_read=[r.read for r in records],
        bytes_written=[r.written for r in records],
        seconds=bcast(comm, time.perf_counter() - start),
        busy_seconds=[r.busy for r in records],
        decomposition={
            t.path: [r.shares[t.path] for r in records] for t in [*plan.targets, *plan.derived]
        },
        resumed_units=records[0].resumed,
    )


def plan_together(work: Work, comm: Comm) -> Plan:
    """The plan of ``work``'s input, every rank inspecting a share of its datasets. Collective.

    Rank 0 then plans the rest (scales, copies, attributes) from the shares
    (:func:`~h5par.engine.inspection.inspect_share`); a problem on any rank ends every
    rank's call with it. On one rank, rank 0 inspects alone.
    """
    shares = None
    if size(comm) > 1:
        with collective_errors(comm, "inspect"):
            share = inspect_share(work, rank(comm), size(comm))
        shares = allgather(comm, share)
    with collective_errors(comm, "inspect"):
        plan = inspect_input(work, shares=shares) if rank(comm) == 0 else None
    plan = bcast(comm, plan)
    assert plan is not None
    return plan


def consolidate(
    output: str | os.PathLike[str],
    into: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    memory: str | int = "256MiB",
    comm: Comm | None = None,
    progress: Callable[[int], None] | None = None,
    watchdog: float = DEFAULT_WATCHDOG,
    how_to_overwrite: str = "pass overwrite=True",
) -> Result:
    """Turn a subfiled output into one ordinary file, in parallel. Collective over ``comm``.

    Every virtual dataset of ``output`` is read through its parts and written as an
    ordinary dataset of ``into`` (with the chunks and filters of its parts); the rest of
    the hierarchy is copied as in any run. The subfiled output is left as it is. An
    existing ``into`` is an error naming ``how_to_overwrite`` (``h5par consolidate``:
    ``"pass --overwrite"``).
    """
    return _apply(
        comm, watchdog, input=output, output=into, overwrite=overwrite, memory=memory,
        progress=progress, materialize=True, overwrite_hint=how_to_overwrite,
    )  # fmt: skip
