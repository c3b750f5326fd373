"""Derived datasets: ``[[derived]]`` tables validated once, then planned against the input.

A derived dataset is new in the output, computed elementwise from datasets of the input
file or of other files (``FILE:/path``, as ``ncbo`` takes a second file) by a formula
(:class:`~h5par.kernels.derive.Derivation`), then optionally converted (``dtype``) and passed
through kernels. :func:`derived_spec` validates a table (every rank, pure);
:func:`derived_targets` turns the specs into targets of the plan (rank 0, metadata only).
"""

from __future__ import annotations

import contextlib
import dataclasses
import keyword
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from h5par.core.attributes import Edit, typed_value
from h5par.core.broadcast import broadcast_shape
from h5par.core.globs import on_paths
from h5par.core.layout import OutputOptions, SourceLayout, dataset_options
from h5par.core.units import Source, Target
from h5par.errors import UsageError
from h5par.hdf5.attributes import fill_attribute
from h5par.hdf5.hierarchy import source_layout
from h5par.kernels import Broadcast, Chain, Reduce
from h5par.kernels.chain import convert_fill
from h5par.kernels.derive import Derivation
from h5par.kernels.expr import FORMULA_FUNCTIONS
from h5par.kernels.user import resolve_function

__all__ = ["Derived", "check_references", "derived_spec", "derived_specs", "derived_targets"]

_KEYS = ("path", "expression", "function", "inputs", "dtype", "overflow", "attrs", "kernels")
_RESERVED = {"nan", "inf", "pi", *FORMULA_FUNCTIONS}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Derived:
    """A validated derived dataset.

    Attributes
    ----------
    path : str
        The new dataset's path in the output.
    derivation : Derivation
        Its expression (or Python function) over the names of ``inputs``.
    inputs : tuple
        ``(name, file, dataset path)``; ``file`` None is the job's input file.
    chain : Chain
        What the formula's result goes through: ``astype`` to ``dtype`` if given, then the
        kernels.
    attrs : dict
        Attributes of the new dataset.
    """

    path: str
    derivation: Derivation
    inputs: tuple[tuple[str, Path | None, str], ...]
    chain: Chain
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        """The other files it reads."""
        return [f for _, f, _ in self.inputs if f is not None]


def derived_specs(specs: Iterable[Derived | Mapping[str, Any]], base: Path) -> tuple[Derived, ...]:
    """Validate derived datasets (tables or specs), each path once; files from ``base``."""
    if isinstance(specs, Mapping) or not isinstance(specs, Iterable):
        raise UsageError(f"derived = {specs!r} (valid: a list of derived dataset tables)")
    done = tuple(
        s if isinstance(s, Derived) else derived_spec(s, base, f"derived[{i}]")
        for i, s in enumerate(specs)
    )
    paths = [d.path for d in done]
    twice = next((p for p in paths if paths.count(p) > 1), None)
    if twice is not None:
        raise UsageError(f"derived: {twice} is given twice (valid: one table per new dataset)")
    inside = next(((p, q) for p in paths for q in paths if q.startswith(p + "/")), None)
    if inside is not None:
        raise UsageError(
            f"derived: {inside[1]} lies inside {inside[0]}, another derived dataset (valid: "
            "paths that are not inside each other)"
        )
    return done


def check_references(specs: Iterable[Derived], outputs: Iterable[Path]) -> None:
    """Refuse a derived dataset that reads a file the job writes (it would read itself)."""
    written = {o.resolve(): o for o in outputs}
    for spec in specs:
        for name, file, _ in spec.inputs:
            if file is not None and file.resolve() in written:
                raise UsageError(
                    f"derived {spec.path}: inputs.{name} reads {str(file)!r}, an output of this "
                    "job (valid: files the job does not write)"
                )


def derived_spec(table: Any, base: Path, where: str = "derived") -> Derived:
    """Validate a ``[[derived]]`` table (or the dict given from Python); files from ``base``.

    Examples
    --------
    >>> spec = derived_spec({"path": "/speed", "expression": "sqrt(u**2 + v**2)",
    ...                      "inputs": {"u": "/u", "v": "/v"}, "dtype": "float32"}, Path("."))
    >>> spec.inputs, [k.name for k in spec.chain.kernels]
    ((('u', None, '/u'), ('v', None, '/v')), ['astype'])
    >>> derived_spec({"path": "/s", "expression": "u", "inputs": {"u": "/u"}, "unit": "K"}, Path("."))
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: derived: unknown key 'unit' (valid: path, expression, function, inputs, dtype, overflow, attrs, kernels)
    """
    if not isinstance(table, Mapping):
        raise UsageError(f"{where}: each entry must be a [[derived]] table")
    unknown = next((k for k in table if k not in _KEYS), None)
    if unknown is not None:
        raise UsageError(f"{where}: unknown key {unknown!r} (valid: {', '.join(_KEYS)})")
    path = table.get("path")
    parts = path.split("/")[1:] if isinstance(path, str) and path.startswith("/") else [""]
    if not isinstance(path, str) or any(part in ("", ".", "..") for part in parts):
        raise UsageError(
            f"{where}: path = {path!r} (valid: the new dataset's path, '/a/b', without empty, "
            "'.' or '..' parts)"
        )
    where = f"derived {path}"
    inputs = _inputs(table.get("inputs"), base, where)
    names = tuple(n for n, _, _ in inputs)
    try:
        if "function" in table:
            function = resolve_function(table["function"], "function")
            derivation = Derivation(table.get("expression"), names, function)
        else:
            derivation = Derivation(table.get("expression", ""), names)
        chain = Chain.from_specs(_kernels(table, where))
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from exc
    _check_chain(chain, where)
    attrs = table.get("attrs", {})
    if not isinstance(attrs, Mapping):
        raise UsageError(f"{where}: attrs = {attrs!r} (valid: a table of names and values)")
    return Derived(path=path, derivation=derivation, inputs=inputs, chain=chain, attrs=dict(attrs))


def _inputs(spec: Any, base: Path, where: str) -> tuple[tuple[str, Path | None, str], ...]:
    valid = 'a table of names and datasets, { u = "/u", ref = "clim.h5:/T" }'
    if not isinstance(spec, Mapping) or not spec:
        raise UsageError(f"{where}: inputs = {spec!r} (valid: {valid})")
    inputs: list[tuple[str, Path | None, str]] = []
    for given, source in spec.items():
        name = unicodedata.normalize("NFKC", str(given))  # as Python's parser reads names
        if not name.isidentifier() or keyword.iskeyword(name) or name in _RESERVED:
            raise UsageError(
                f"{where}: input name {name!r} (valid: a Python identifier other than "
                "nan, inf, pi and the functions)"
            )
        if not isinstance(source, str) or "/" not in source:
            raise UsageError(f"{where}: inputs.{name} = {source!r} (valid: {valid})")
        file, sep, path = source.rpartition(":/")
        if not sep and source.startswith("/"):
            inputs.append((name, None, source))
            continue
        if not sep or not file:
            raise UsageError(f"{where}: inputs.{name} = {source!r} (valid: {valid})")
        full = base / file
        if not full.is_file():
            raise UsageError(f"{where}: inputs.{name}: no such file {str(full)!r}")
        inputs.append((name, full, "/" + path))
    return tuple(inputs)


def _kernels(table: Mapping[str, Any], where: str) -> list[Any]:
    kernels = table.get("kernels", [])
    if not isinstance(kernels, list) or not all(isinstance(k, Mapping) for k in kernels):
        raise UsageError(f"{where}: kernels = {kernels!r} (valid: a list of kernel tables)")
    dtype = table.get("dtype")
    if dtype is None and "overflow" in table:
        raise UsageError(f"{where}: overflow needs a dtype (valid: dtype = 'int8', say)")
    if dtype is None:
        return list(kernels)
    if not isinstance(dtype, str):
        raise UsageError(f"{where}: dtype = {dtype!r} (valid: a numpy dtype name, 'float32')")
    overflow = {"overflow": table["overflow"]} if "overflow" in table else {}
    return [{"name": "astype", "dtype": dtype, **overflow}, *kernels]


def _check_chain(chain: Chain, where: str) -> None:
    """Kernels a derived dataset's blocks can go through: elementwise ones and statistics."""
    for kernel in chain.kernels:
        if (
            kernel.has_halo
            or isinstance(kernel, Broadcast)
            or (isinstance(kernel, Reduce) and (kernel.needs_range or kernel.axis is not None))
        ):
            raise UsageError(
                f"{where}: kernel {kernel.name!r} with these parameters cannot follow a "
                "formula yet (valid: elementwise kernels, reduce over the whole result)"
            )


def derived_targets(
    specs: tuple[Derived, ...],
    src: h5py.File,
    options: OutputOptions,
    respect_fill_value: bool,
    taken: set[str],
) -> tuple[list[Target], list[tuple[Edit, Any]]]:
    """The targets of ``specs`` in the input ``src`` and their attributes (rank 0).

    ``taken`` are the output's paths already used. A missing input, a shape mismatch, a
    path already in the output or a result no kernel can take is a UsageError naming it.
    """
    targets, edits = [], []
    with _files(specs) as files:
        for spec in specs:
            if spec.path in src or spec.path in taken:
                raise UsageError(
                    f"derived {spec.path}: the output already has {spec.path} (valid: a new path)"
                )
            above = sorted(on_paths([spec.path]) - {spec.path})
            blocked = next((a for a in above if isinstance(src.get(a), h5py.Dataset)), None)
            if blocked is not None:
                raise UsageError(
                    f"derived {spec.path}: {blocked} is a dataset, not a group (valid: a path "
                    "whose parents are groups or new)"
                )
            try:
                target = _target(spec, src, files, options, respect_fill_value)
            except UsageError as exc:
                raise UsageError(f"derived {spec.path}: {exc}") from exc
            taken.add(spec.path)
            targets.append(target)
            made = [Edit(spec.path, name, value) for name, value in spec.attrs.items()]
            edits += [(edit, typed_value(edit, target.out_dtype)) for edit in made]
    return targets, edits


@contextlib.contextmanager
def _files(specs: tuple[Derived, ...]) -> Iterator[dict[Path, h5py.File]]:
    """The other files the specs read, each opened once (read-only) while they are planned."""
    with contextlib.ExitStack() as stack:
        files: dict[Path, h5py.File] = {}
        for path in sorted({f for spec in specs for f in spec.files}):
            try:
                files[path] = stack.enter_context(h5py.File(path, "r"))
            except OSError as exc:
                raise UsageError(f"cannot open {str(path)!r} as an HDF5 file: {exc}") from exc
        yield files


def _result_fill(source: Source, dtype: np.dtype[Any]) -> Any:
    """The result's fill value: ``source``'s ``_FillValue`` in the result's dtype."""
    try:
        return convert_fill(source.fill, dtype)
    except UsageError as exc:
        raise UsageError(
            f"input {source.name}'s _FillValue {source.fill!r} cannot be stored in the "
            f"result's {dtype} (valid: a dtype that holds it, or run.respect_fill_value = false)"
        ) from exc


def _target(
    spec: Derived,
    src: h5py.File,
    files: Mapping[Path, h5py.File],
    options: OutputOptions,
    respect_fill_value: bool,
) -> Target:
    sources, datasets = [], {}
    for name, file, path in spec.inputs:
        dset = (src if file is None else files[file]).get(path)
        where = "the input" if file is None else repr(str(file))
        if not isinstance(dset, h5py.Dataset):
            raise UsageError(f"input {name}: {path} is not a dataset of {where}")
        if dset.shape is None or dset.dtype.kind not in "biuf":
            raise UsageError(
                f"input {name}: {path} of {where} is {dset.dtype} {dset.shape} (valid: a "
                "numeric dataset)"
            )
        fill = fill_attribute(dset) if respect_fill_value else None
        sources.append(
            Source(name, None if file is None else str(file), path, dset.shape, dset.dtype, fill)
        )
        datasets[name] = dset
    shape = broadcast_shape({s.name: s.shape for s in sources})
    converted = bool(spec.chain.kernels) and spec.chain.kernels[0].name == "astype"
    dtype = spec.derivation.result_dtype(
        {s.name: (s.dtype, len(s.shape)) for s in sources}, booleans=converted
    )
    if dtype.kind == "b":  # booleans are stored as the dtype asked for, missing values too
        dtype = spec.chain.kernels[0].result_dtype(dtype)
    first = next((s for s in sources if s.fill is not None), None)
    fill = None if first is None else _result_fill(first, dtype)
    out_dtype, out_shape = spec.chain.check(dtype, shape, fill)
    like = next((s for s in sources if s.file is None and s.shape == shape), None)
    layout = SourceLayout() if like is None else source_layout(datasets[like.name])
    create = dataset_options(layout, shape, out_shape, out_dtype, options, True)
    out_fill = None if fill is None else convert_fill(fill, out_dtype)
    if out_fill is not None:
        create["fillvalue"] = out_fill
    align = create.get("chunks") if out_shape == shape else None
    return Target(
        spec.path, shape, dtype, out_shape, out_dtype, align, create, fill,
        out_fill, sources=tuple(sources), formula=spec.derivation.text,
        like=None if like is None else like.path,
        virtual=any(d.is_virtual for d in datasets.values()),  # read without mpio
    )  # fmt: skip
