"""A run's configuration: one keyword-only :class:`Work`, built and validated in one place.

A job file (with its ``--set`` overrides), :func:`h5par.run` and :func:`h5par.apply` all
come here: :func:`configure` turns keyword settings into a validated ``Work``, and
:func:`work_for` gives the ``Work`` of one file of a :class:`~h5par.engine.jobs.Job`.
Nothing downstream parses settings again. Validation reads no data and is the same on
every rank; its errors are :class:`~h5par.errors.UsageError` raised before anything is
opened for writing.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py

from h5par.core.attributes import AttributeEdits, attribute_edits
from h5par.core.layout import OutputOptions
from h5par.core.sizes import parse_size
from h5par.core.slicing import checked
from h5par.core.units import Target
from h5par.engine.derived import Derived, check_references, derived_specs
from h5par.engine.folders import check_output_folder
from h5par.engine.jobs import Job, JobFile
from h5par.engine.series import Series
from h5par.errors import H5ParError, UsageError
from h5par.hdf5.io import DRIVERS, SERIAL_H5PY_FIX
from h5par.hdf5.subfiles import parts_folder
from h5par.kernels import Chain, Kernel

__all__ = ["Work", "configure", "work_for"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Work:
    """A validated run of one input file: what :func:`h5par.apply` was asked to do.

    Attributes
    ----------
    input, output : Path
        The file read and the file written (None: in place, or reductions only).
    in_place : bool
        Results are written back into ``input``.
    chain : Chain
        The kernels, in order.
    patterns : list of str or None
        Dataset globs to process (None: every dataset but dimension scales).
    budget : int
        Memory per rank in bytes.
    options : OutputOptions
        Layout of output datasets.
    overwrite, resume, materialize : bool
        Replace an existing output; require a stopped run to continue; turn virtual
        datasets of the input into ordinary ones (consolidate).
    driver, driver_options
        How the input is opened.
    nranks : int
        Ranks that share the file.
    provenance : dict
        Attributes recorded in the output.
    progress : callable or None
        Called on rank 0 with the input bytes of each finished step.
    respect_fill_value : bool
        Elements equal to ``_FillValue`` pass through kernels and stay out of reductions.
    select : dict
        Dataset glob -> selection text (``[input.select]``).
    attrs : AttributeEdits
        Attributes the output gets and loses (``[output.attrs]``, ``[output.delete_attrs]``).
    history : str or None
        The line put in front of the output's root ``history`` attribute (None: none).
    derived : tuple of Derived
        New datasets computed from others (``[[derived]]``).
    overwrite_hint : str
        How the caller asks to replace an existing output, for the errors that say it
        exists: ``"pass overwrite=True"`` from Python, ``"set output.overwrite = true or
        pass --overwrite"`` for a job run by the command line.
    series : Series or None
        The series whose joined file ``input`` is (:mod:`h5par.engine.series`).
    """

    input: Path
    output: Path | None = None
    in_place: bool = False
    chain: Chain = dataclasses.field(default_factory=Chain)
    patterns: list[str] | None = None
    budget: int
    options: OutputOptions = dataclasses.field(default_factory=OutputOptions)
    overwrite: bool = False
    driver: str = "auto"
    driver_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    nranks: int = 1
    provenance: dict[str, str] = dataclasses.field(default_factory=dict)
    progress: Callable[[int], None] | None = None
    respect_fill_value: bool = True
    resume: bool = False
    materialize: bool = False
    select: dict[str, str] = dataclasses.field(default_factory=dict)
    attrs: AttributeEdits = dataclasses.field(default_factory=AttributeEdits)
    history: str | None = None
    derived: tuple[Derived, ...] = ()
    overwrite_hint: str = "pass overwrite=True"
    series: Series | None = None

    @property
    def destination(self) -> Path | None:
        """The file the run writes (the input for in-place runs)."""
        return self.input if self.in_place else self.output

    def chain_for(self, target: Target) -> Chain:
        """The kernels ``target`` goes through: none for an untouched dataset copied."""
        if target.derived:
            return self.derived_spec(target.path).chain
        return Chain() if target.copy else self.chain

    def derived_spec(self, path: str) -> Derived:
        """The derived dataset written at ``path``."""
        return next(d for d in self.derived if d.path == path)


def configure(
    *,
    input: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    kernels: Chain | Iterable[Mapping[str, Any] | Kernel] = (),
    datasets: Sequence[str] | str | None = None,
    memory: str | int = "256MiB",
    options: OutputOptions | None = None,
    select: Mapping[str, str] | None = None,
    driver_options: Mapping[str, Any] | None = None,
    provenance: Mapping[str, str] | None = None,
    attrs: AttributeEdits | Mapping[str, Any] | None = None,
    delete_attrs: Mapping[str, Any] | None = None,
    derived: Iterable[Derived | Mapping[str, Any]] = (),
    **settings: Any,
) -> Work:
    """Validate a run's settings into a :class:`Work` (pure checks, the same on every rank).

    ``attrs`` is an :class:`~h5par.core.attributes.AttributeEdits` or the attributes to set
    (``{path: {name: value}}``, with ``delete_attrs`` as ``{path: [name, ...]}``).
    ``derived`` are :class:`~h5par.engine.derived.Derived` or tables as a job gives them
    (other files relative to the current folder).
    ``settings`` are the other fields of :class:`Work` by name (``in_place``, ``overwrite``,
    ``driver``, ``nranks``, ``progress``, ``respect_fill_value``, ``resume``,
    ``materialize``, ``history``); an unknown name is a ``TypeError``, as in any Python call.

    Examples
    --------
    >>> configure(input=__file__, kernels=[{"name": "reduce", "op": "sum"}]).budget
    268435456
    >>> configure(input=__file__, output="out.h5", memory="1 GB", in_place=True)
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: give either an output path or in_place = true, not both
    """
    work = Work(
        input=Path(input),
        output=None if output is None else Path(output),
        chain=Chain.from_specs(kernels),
        patterns=[datasets] if isinstance(datasets, str) else _list(datasets),
        budget=_budget(memory),
        options=options or OutputOptions(),
        select=checked(select or {}, "select {!r}"),
        driver_options=dict(driver_options or {}),
        provenance=dict(provenance or {}),
        attrs=attrs if isinstance(attrs, AttributeEdits) else attribute_edits(attrs, delete_attrs),
        derived=derived_specs(derived, Path.cwd()),
        **settings,
    )
    _check_input(work)
    _check_mode(work)
    _check_output(work)
    return work


def work_for(
    job: Job, file: JobFile, how_to_overwrite: str = "pass overwrite=True", **settings: Any
) -> Work:
    """The :class:`Work` of one file of ``job``; ``settings`` as for :func:`configure`.

    ``how_to_overwrite`` says how the caller replaces an existing output besides the
    job's ``output.overwrite`` (``"pass --overwrite"`` on the command line).
    """
    return configure(
        overwrite_hint=f"set output.overwrite = true or {how_to_overwrite}",
        input=file.input,
        output=None if job.in_place else file.output,
        kernels=job.chain,
        datasets=job.datasets,
        in_place=job.in_place,
        overwrite=job.overwrite,
        memory=job.memory,
        options=job.options,
        driver=job.driver,
        driver_options=job.driver_options,
        respect_fill_value=job.respect_fill_value,
        select=job.select,
        attrs=job.attrs,
        derived=job.derived,
        series=job.series,
        materialize=job.series is not None and not job.series.virtual,
        **settings,
    )


def _list(datasets: Sequence[str] | None) -> list[str] | None:
    return None if datasets is None else list(datasets)


def _budget(memory: str | int) -> int:
    try:
        return parse_size(memory)
    except ValueError as exc:
        raise UsageError(f"memory: {exc}") from exc


def _check_input(work: Work) -> None:
    if work.driver != "auto" and work.driver not in DRIVERS:
        raise UsageError(f"input driver = {work.driver!r} (valid: auto, {', '.join(DRIVERS)})")
    if work.driver == "family" or work.input.is_file():
        return
    if not os.path.lexists(work.input):
        raise UsageError(f"input {str(work.input)!r}: no such file")
    what = "a folder" if work.input.is_dir() else "not a file (a dangling link, a device?)"
    raise UsageError(f"input {str(work.input)!r} is {what} (valid: an HDF5 file)")


def _check_mode(work: Work) -> None:
    """What in-place runs cannot do, and a run that would write nothing."""
    if work.in_place and work.output is not None:
        raise UsageError("give either an output path or in_place = true, not both")
    if work.in_place and any(k.has_halo for k in work.chain.kernels):
        raise UsageError(
            "in-place runs cannot use kernels with neighbours (a block's halo would be read "
            "after its neighbour was overwritten); write an output file"
        )
    if work.in_place and work.options.subfiled:
        raise UsageError("output.layout = 'subfiled' needs an output file, not in_place")
    if work.in_place and work.options.drop:
        raise UsageError(
            "output.unselected = 'drop' needs an output file, not in_place (valid with "
            "in_place: 'copy')"
        )
    if work.in_place and work.options.changes_layout:
        raise UsageError(
            "in-place runs keep the layout: chunks/compression/shuffle/fletcher32/fillvalue "
            "need an output file"
        )
    edits = work.attrs.values or work.attrs.deletions
    if edits and not work.in_place and work.output is None:
        raise UsageError(
            "output.attrs and output.delete_attrs need an output file or in_place = true"
        )
    if work.derived and (work.in_place or work.output is None):
        raise UsageError("derived datasets need an output file (valid: output.path, not in_place)")
    if not work.in_place and work.output is None and not work.chain.reducers:
        raise UsageError(
            "nothing to write: give an output path, in_place = true, or a reduce kernel"
        )


def _check_output(work: Work) -> None:
    """The output's name, its parts folder, and parallel writes with this h5py."""
    if work.output is not None:
        _check_output_path(work)
        check_references(work.derived, [work.output])
        if work.options.subfiled:
            _check_parts(parts_folder(work.output), work)
    writes = work.in_place or work.output is not None
    if writes and work.nranks > 1 and not h5py.get_config().mpi and not work.options.subfiled:
        raise H5ParError(SERIAL_H5PY_FIX.format(n=work.nranks))


def _check_output_path(work: Work) -> None:
    source, target = work.input, work.output
    assert target is not None
    if target.resolve() == source.resolve():
        raise UsageError(
            f"output {str(target)!r} is the input: use in_place = true to write into it"
        )
    if os.path.isdir(target):  # os.replace cannot put the finished output there
        raise UsageError(f"output {str(target)!r} is a folder (valid: the path of a file)")
    if os.path.exists(target) and not work.overwrite:  # False, not OSError, for a name too long
        raise UsageError(f"output {str(target)!r} exists ({work.overwrite_hint} to replace it)")
    check_output_folder(target.parent)  # missing folders are created after validation


def _check_parts(parts: Path, work: Work) -> None:
    """A subfiled output's parts folder is replaced at the end: only a folder, with overwrite."""
    if os.path.lexists(parts) and (os.path.islink(parts) or not os.path.isdir(parts)):
        raise UsageError(f"output parts folder {str(parts)!r} exists and is not a folder")
    if os.path.lexists(parts) and not work.overwrite:
        raise UsageError(
            f"output parts folder {str(parts)!r} exists ({work.overwrite_hint} to replace it)"
        )
