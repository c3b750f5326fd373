"""Job files: TOML loading, ``--set`` overrides, validation into dataclasses (pure, no MPI).

Everything a job can get wrong is found here, identically on every rank, before any file
is opened: unknown keys and kernels, wrong types, missing inputs, colliding outputs.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import math
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from h5par.core.attributes import AttributeEdits, attribute_edits
from h5par.core.layout import COMPRESSIONS, OutputOptions
from h5par.core.series import natural_key
from h5par.core.sizes import parse_size
from h5par.core.slicing import checked
from h5par.engine.derived import Derived, check_references, derived_specs
from h5par.engine.series import Series, joined_file, series_of, without
from h5par.errors import UsageError
from h5par.kernels import Chain
from h5par.parallel.guard import DEFAULT_WATCHDOG

__all__ = ["Job", "JobFile", "apply_overrides", "expand_inputs", "job_from_dict", "load_job"]

_TABLES: dict[str, dict[str, type | tuple[type, ...]]] = {
    "input": {
        "path": (str, list),
        "datasets": (str, list),
        "select": dict,
        "driver": str,
        "memb_size": (str, int),
        "combine": str,
        "axis": int,
        "order_by": str,
    },
    "output": {
        "path": str,
        "in_place": bool,
        "overwrite": bool,
        "layout": str,
        "compression": str,
        "compression_level": int,
        "shuffle": bool,
        "fletcher32": bool,
        "chunks": (str, list),
        "fillvalue": (int, float),
        "unselected": str,
        "attrs": dict,
        "delete_attrs": dict,
        "provenance": bool,
    },
    "run": {
        "memory": (str, int),
        "file_parallel_below": (str, int),
        "respect_fill_value": bool,
        "watchdog": (int, float),
    },
}
_TOP = dict(version=int, input=dict, output=dict, kernels=list, derived=list, run=dict)
_TYPE_NAMES = {
    str: "a string",
    list: "a list",
    bool: "true/false",
    int: "an integer",
    float: "a number",
    dict: "a table",
}
_PLACEHOLDERS = ("{stem}", "{name}", "{index}")
#: How deeply a job may nest tables and arrays (its own keys need 3 levels).
MAX_DEPTH = 32
_TOO_DEEP = f"nests arrays or tables too deeply (valid: at most {MAX_DEPTH} levels)"


@dataclasses.dataclass(frozen=True)
class JobFile:
    """One input file and where its output goes (None: reduce only; input itself: in place)."""

    index: int
    input: Path
    output: Path | None


@dataclasses.dataclass(frozen=True)
class Job:
    """A validated job: what ``h5par run`` and :func:`h5par.run` execute.

    Attributes
    ----------
    files : list of JobFile
        Inputs (globs expanded, sorted) with their output names.
    datasets : list of str or None
        Dataset globs; None selects every dataset but dimension scales.
    select : dict
        ``[input.select]``: dataset glob -> selection (``"4:8:2"``, ``"[1, 2, 7]"``).
    kernels : list of dict
        The kernel tables, in order, as the job gives them.
    chain : Chain
        The chain they build (validated, built once).
    options : OutputOptions
        Layout of output datasets.
    in_place, overwrite : bool
        Output mode.
    memory : int
        Per-rank budget in bytes.
    file_parallel_below : int
        Files whose size is below this are processed whole by one rank each.
    respect_fill_value : bool
        Elements equal to ``_FillValue`` pass through kernels and stay out of reductions.
    watchdog : float
        Seconds without progress after which a rank counts as blocked (0: no watchdog).
    driver : str
        Read driver (``auto``, ``family``, ``core``...); ``driver_options`` its options.
    text : str
        The job as TOML/JSON text (recorded in outputs for provenance).
    attrs : AttributeEdits
        ``[output.attrs]`` and ``[output.delete_attrs]``.
    provenance : bool
        Outputs record the ``history`` line and the ``h5par_*`` attributes.
    derived : tuple of Derived
        ``[[derived]]``: new datasets computed from others.
    series : Series or None
        ``input.combine``: every input makes one output (``files`` is then its one joined
        file, :mod:`h5par.engine.series`).
    """

    files: list[JobFile]
    datasets: list[str] | None
    kernels: list[dict[str, Any]]
    chain: Chain
    options: OutputOptions
    in_place: bool
    overwrite: bool
    memory: int
    file_parallel_below: int
    driver: str
    driver_options: dict[str, Any]
    text: str
    respect_fill_value: bool = True
    watchdog: float = DEFAULT_WATCHDOG
    select: dict[str, str] = dataclasses.field(default_factory=dict)
    attrs: AttributeEdits = dataclasses.field(default_factory=AttributeEdits)
    provenance: bool = True
    derived: tuple[Derived, ...] = ()
    series: Series | None = None

    def destination(self, file: JobFile) -> Path | None:
        """The file a run of ``file`` writes: its input in place, else its output."""
        return file.input if self.in_place else file.output

    @property
    def sha256(self) -> str:
        """Hash of the job text."""
        return hashlib.sha256(self.text.encode()).hexdigest()


def load_job(path: str | Path, overrides: Sequence[str] = ()) -> Job:
    """Read, override (``KEY=VALUE``) and validate a TOML job file.

    Relative paths in the job resolve against the job file's folder.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read job file {str(path)!r}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"job file {str(path)!r} is not valid TOML: {exc}") from exc
    except RecursionError as exc:  # tomllib parses nested arrays and tables recursively
        raise UsageError(f"job file {str(path)!r} {_TOO_DEEP}") from exc
    _check_depth(data, f"job file {str(path)!r}")
    if overrides:
        data = apply_overrides(data, overrides)
        text = text + "\n# --set " + " --set ".join(overrides) + "\n"
    return job_from_dict(data, base=path.parent, text=text)


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides such as ``input.path=x.h5`` or ``kernels.0.min=1``.

    Values are read as TOML values (``true``, ``3``, ``[1, 2]``) and otherwise taken as
    strings.

    Examples
    --------
    >>> apply_overrides({"run": {"memory": "1GiB"}}, ["run.memory=64MiB", "output.overwrite=true"])
    {'run': {'memory': '64MiB'}, 'output': {'overwrite': True}}
    """
    data = json.loads(json.dumps(data))  # a deep copy of plain TOML data
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. --set input.path=run.h5")
        parts = key.strip().split(".")
        try:
            value = _toml_value(raw)
        except RecursionError as exc:
            raise UsageError(f"--set {key.strip()}=...: the value {_TOO_DEEP}") from exc
        _check_depth(value, f"--set {key.strip()}=...: the value")
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            node = _child(node, part, parts[i + 1], item)
        _assign(node, parts[-1], value, item)
    return data


def _check_depth(data: Any, what: str) -> None:
    """Refuse tables and arrays nested deeper than :data:`MAX_DEPTH` (or cyclic ones).

    Examples
    --------
    >>> _check_depth({"run": {"memory": "1GiB"}}, "job")
    >>> _check_depth([[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]], "job")
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: job nests arrays or tables too deeply (valid: at most 32 levels)
    """
    stack = [(data, 0)]
    while stack:  # iterative: a deep structure must not exhaust Python's recursion limit
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise UsageError(f"{what} {_TOO_DEEP}")
        if isinstance(node, Mapping):
            stack += [(child, depth + 1) for child in node.values()]
        elif isinstance(node, (list, tuple)):
            stack += [(child, depth + 1) for child in node]


def _toml_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _child(node: Any, part: str, following: str, item: str) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, part, item)]
    if not isinstance(node, dict):
        raise UsageError(f"--set {item!r}: {part!r} is not inside a table")
    return node.setdefault(part, [] if following.isdigit() else {})


def _assign(node: Any, part: str, value: Any, item: str) -> None:
    if isinstance(node, list):
        node[_list_index(node, part, item)] = value
    elif isinstance(node, dict):
        node[part] = value
    else:
        raise UsageError(f"--set {item!r}: {part!r} is not inside a table")


def _list_index(node: list[Any], part: str, item: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise UsageError(f"--set {item!r}: index {part!r} (valid: 0..{len(node) - 1})")
    return int(part)


def job_from_dict(data: Mapping[str, Any], base: str | Path = ".", text: str | None = None) -> Job:
    """Validate a job given as a dict (as TOML would give it); paths relative to ``base``."""
    _check_depth(data, "job")
    _check_table("job", data, _TOP)
    if data.get("version", 1) != 1:
        raise UsageError(f"version = {data['version']!r} (valid: 1)")
    tables = {name: data.get(name, {}) for name in _TABLES}
    for name, table in tables.items():
        _check_table(name, table, _TABLES[name])
    kernels = [dict(k) for k in data.get("kernels", [])]
    if not all(isinstance(k, dict) for k in kernels):
        raise UsageError("kernels: each entry must be a [[kernels]] table with a name")
    chain = Chain.from_specs(kernels)  # raises on unknown kernels and bad parameters
    inp, out, run = tables["input"], tables["output"], tables["run"]
    base = Path(base)
    order = None if inp.get("combine") is None else natural_key  # a series: dump_2, dump_10
    inputs = expand_inputs(inp.get("path"), base, inp.get("driver", "auto"), order=order)
    series = series_of(inp, out.get("layout", "single"), inputs)
    if series is not None:
        changes = bool(kernels or data.get("derived") or inp.get("select"))
        out, series = _series_output(series, inp, out, base, changes)
        files, in_place = [JobFile(0, joined_file(series, out["path"]), out["path"])], False
    else:
        files, in_place = _outputs(
            inputs, out, base, has_reduce=any(k.get("name") == "reduce" for k in kernels)
        )
    options = _options(out)
    memory = _size("run.memory", run.get("memory", "256MiB"))
    datasets = inp.get("datasets")
    if "memb_size" in inp and inp.get("driver") != "family":
        raise UsageError(
            f"input.memb_size = {inp['memb_size']!r} only applies to driver = 'family' "
            f"(driver = {inp.get('driver', 'auto')!r}): set driver = 'family' or remove memb_size"
        )
    driver_options = (
        {"memb_size": _size("input.memb_size", inp["memb_size"])} if "memb_size" in inp else {}
    )
    return Job(
        files=files,
        datasets=[datasets] if isinstance(datasets, str) else datasets,
        kernels=kernels,
        chain=chain,
        options=options,
        in_place=in_place,
        overwrite=bool(out.get("overwrite", False)),
        memory=memory,
        file_parallel_below=_file_parallel_below(run.get("file_parallel_below", "64MiB")),
        driver=str(inp.get("driver", "auto")),
        driver_options=driver_options,
        select=checked(inp.get("select", {}), "input.select.{}"),
        text=text if text is not None else json.dumps(data, sort_keys=True, default=str),
        respect_fill_value=bool(run.get("respect_fill_value", True)),
        watchdog=_watchdog(run.get("watchdog", DEFAULT_WATCHDOG)),
        attrs=attribute_edits(out.get("attrs"), out.get("delete_attrs")),
        provenance=_provenance(out.get("provenance", True), in_place),
        derived=_derived(data.get("derived", []), base, files),
        series=series,
    )


def _series_output(
    series: Series, inp: Mapping[str, Any], out: Mapping[str, Any], base: Path, changes: bool
) -> tuple[dict[str, Any], Series]:
    """``[output]`` of a series with its path resolved, and the series without the output.

    A series makes one output file (``layout = "virtual"`` is then a plain one: the file
    maps the inputs and cannot change data); a glob of ``input.path`` that matches the
    output (an earlier run's) leaves it out.
    """
    if out.get("in_place", False):
        raise UsageError("input.combine makes one new file: give output.path, not in_place")
    pattern = out.get("path")
    if pattern is None:
        raise UsageError("input.combine needs output.path (the one file the series makes)")
    if any(ph in pattern for ph in _PLACEHOLDERS):
        raise UsageError(
            f"output.path = {pattern!r}: a series makes one file (valid: a path without "
            f"{', '.join(_PLACEHOLDERS)})"
        )
    path = tidy(base / pattern)
    if path.resolve() in {p.resolve() for p in series.sources}:
        spec = inp["path"]
        if not any(glob.has_magic(p) for p in ([spec] if isinstance(spec, str) else spec)):
            raise UsageError(f"output {str(path)!r} would overwrite an input of the series")
        series = without(series, path)  # the output of an earlier run: never an input
    if series.virtual and changes:
        raise UsageError(
            "output.layout = 'virtual' maps the inputs: it cannot apply kernels, derived "
            "datasets or selections (valid with them: 'single', 'subfiled')"
        )
    layout = "single" if series.virtual else out.get("layout", "single")
    return {**out, "path": path, "layout": layout}, series


def _derived(tables: Any, base: Path, files: list[JobFile]) -> tuple[Derived, ...]:
    specs = derived_specs(tables, base)
    check_references(specs, [f.output for f in files if f.output is not None])
    return specs


def _provenance(provenance: bool, in_place: bool) -> bool:
    if not provenance and in_place:
        raise UsageError(
            "output.provenance = false needs an output file, not in_place (valid with "
            "in_place: true): the job recorded in the file keeps a rerun from applying it twice"
        )
    return provenance


def _watchdog(value: float) -> float:
    if not (value >= 0 and math.isfinite(value)):
        raise UsageError(
            f"run.watchdog = {value!r}: expected seconds >= 0 (0 turns the watchdog off)"
        )
    return float(value)


def _check_table(name: str, table: Any, schema: Mapping[str, type | tuple[type, ...]]) -> None:
    if not isinstance(table, Mapping):
        raise UsageError(f"[{name}] must be a table")
    for key, value in table.items():
        if key not in schema:
            raise UsageError(f"{name}: unknown key {key!r} (valid: {', '.join(schema)})")
        allowed = schema[key]
        expected: tuple[type, ...] = allowed if isinstance(allowed, tuple) else (allowed,)
        if (isinstance(value, bool) and bool not in expected) or not isinstance(value, expected):
            names = " or ".join(_TYPE_NAMES[t] for t in expected)
            where = key if name == "job" else f"{name}.{key}"
            raise UsageError(f"{where} = {value!r} has the wrong type (valid: {names})")


def _file_parallel_below(value: Any) -> int:
    """``run.file_parallel_below``: a size, or 0 (every file is shared by all ranks)."""
    if value in (0, "0"):
        return 0
    return _size("run.file_parallel_below", value)


def _size(key: str, value: Any) -> int:
    try:
        return parse_size(value)
    except ValueError as exc:
        raise UsageError(f"{key}: {exc}") from None  # parse_size's own message, whole


def expand_inputs(
    spec: Any,
    base: Path,
    driver: str,
    key: str = "input.path",
    order: Callable[[str], Any] | None = None,
) -> list[Path]:
    """The input files ``spec`` (a file, a glob or a list, relative to ``base``) names.

    An existing file is itself, whatever its name holds; a glob's matches are sorted (by
    ``order``, a sort key, when given); one file under two names is refused. ``key`` is
    what a pattern that finds nothing is called in the error (``--input`` for ``h5par init``).
    """
    if spec is None:
        raise UsageError("input.path is missing (valid: a file, a glob, or a list of files)")
    patterns = [spec] if isinstance(spec, str) else spec
    if not patterns or not all(isinstance(p, str) for p in patterns):
        raise UsageError(f"input.path = {spec!r} (valid: a file, a glob, or a list of files)")
    found: list[Path] = []
    for pattern in patterns:
        full = base / pattern
        if driver == "family":  # a printf-style member pattern, not a glob
            hits = (
                [str(full)] if glob.glob(str(full).replace("%06d", "*").replace("%d", "*")) else []
            )
        else:
            hits = (  # an existing file is itself, whatever its name holds (data[1].h5)
                sorted(glob.glob(str(full)), key=order)
                if glob.has_magic(pattern) and not full.is_file()
                else ([str(full)] if full.is_file() else [])
            )
        if not hits:
            why = " matches no file" if glob.has_magic(pattern) else ": no such file"
            why = " is a folder, not a file" if full.is_dir() else why
            raise UsageError(f"{key} {pattern!r}{why} (looked in {str(base)!r})")
        found += [t for t in map(tidy, hits) if t not in found]
    _check_distinct_inputs(found)
    return found


def tidy(path: str | Path) -> Path:
    """``path`` without ``..`` steps that go back out of a real folder (``jobs/../x`` -> ``x``).

    A ``..`` after a symbolic link stays: the link's parent is not the folder it sits in.
    The result names the same file; it reads better in plans, summaries and reports.
    """
    parts: list[str] = []
    for part in Path(path).parts:
        back = part == ".." and parts and parts[-1] not in ("..", os.sep)
        if back and not Path(*parts).is_symlink():
            parts.pop()
        else:
            parts.append(part)
    return Path(*parts) if parts else Path(".")


def _check_distinct_inputs(inputs: list[Path]) -> None:
    """Refuse two names of one file (a link, ``x/../a.h5``): it would be processed twice.

    Files are told apart by device and inode; a member pattern of the family driver,
    which names no file, is left out.
    """
    seen: dict[tuple[int, int], Path] = {}
    for path in inputs:
        try:
            stat = path.stat()
        except OSError:
            continue
        first = seen.setdefault((stat.st_dev, stat.st_ino), path)
        if first is not path:
            raise UsageError(
                f"input.path: {str(first)!r} and {str(path)!r} are the same file "
                "(valid: each input file once; a link or another name of a listed file "
                "would be processed twice)"
            )


def _outputs(
    inputs: list[Path], out: Mapping[str, Any], base: Path, has_reduce: bool
) -> tuple[list[JobFile], bool]:
    in_place = bool(out.get("in_place", False))
    if out.get("layout") == "virtual":
        raise UsageError(
            "output.layout = 'virtual' needs input.combine (valid without it: single, subfiled)"
        )
    pattern = out.get("path")
    if in_place and pattern is not None:
        raise UsageError("output: give either path or in_place = true, not both")
    if in_place and out.get("layout", "single") != "single":
        raise UsageError(
            f"output.layout = {out['layout']!r} needs an output file (valid with in_place: 'single')"
        )
    if in_place:
        return [JobFile(i, p, p) for i, p in enumerate(inputs)], True
    if pattern is None:
        if not has_reduce:
            raise UsageError(
                "output.path is missing (valid: a path, or in_place = true, or a reduce kernel)"
            )
        return [JobFile(i, p, None) for i, p in enumerate(inputs)], False
    files = []
    for i, src in enumerate(inputs):
        try:
            name = pattern.format(stem=src.stem, name=src.name, index=i)
        except (KeyError, IndexError, ValueError) as exc:
            raise UsageError(
                f"output.path = {pattern!r}: bad placeholder {exc} (valid: {', '.join(_PLACEHOLDERS)})"
            ) from None  # the text holds str.format's message
        files.append(JobFile(i, src, tidy(base / name)))
    if len(inputs) > 1 and not any(ph in pattern for ph in _PLACEHOLDERS):
        raise UsageError(
            f"output.path = {pattern!r} names one file for {len(inputs)} inputs "
            f"(valid: a pattern with {', '.join(_PLACEHOLDERS)})"
        )
    _check_distinct(files)
    return files, False


def _check_distinct(files: list[JobFile]) -> None:
    seen: dict[Path, Path] = {}
    inputs = {f.input.resolve() for f in files}
    for f in files:
        assert f.output is not None
        target = f.output.resolve()
        if target in inputs:
            raise UsageError(
                f"output {str(f.output)!r} would overwrite an input (use in_place = true for that)"
            )
        if target in seen:
            raise UsageError(
                f"outputs of {str(seen[target])!r} and {str(f.input)!r} collide at {str(f.output)!r}"
            )
        seen[target] = f.input


def _options(out: Mapping[str, Any]) -> OutputOptions:
    compression = out.get("compression", "keep")
    if compression not in COMPRESSIONS:
        raise UsageError(f"output.compression = {compression!r} (valid: {', '.join(COMPRESSIONS)})")
    return OutputOptions(
        chunks=out.get("chunks", "keep"),
        compression=compression,
        compression_level=out.get("compression_level"),
        shuffle=out.get("shuffle"),
        fletcher32=out.get("fletcher32"),
        fillvalue=out.get("fillvalue"),
        layout=out.get("layout", "single"),
        unselected=out.get("unselected", "copy"),
    )
