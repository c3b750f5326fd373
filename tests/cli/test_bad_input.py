"""The bad-input catalogue: each way a job or its files can be wrong, run through the CLI.

Every case is a real ``h5par run JOB`` on 2 ranks under mpirun and must end with the
contract's exit status on every rank (2: usage or validation error, nothing opened for
writing; 1: runtime failure), exactly one ``h5par: error:`` line naming the bad value (and the
valid choices where there are some), no traceback unless ``--debug``, and the job's folder
exactly as it was: no output, no ``.NAME.h5par-*.tmp`` left behind, nothing changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
# Runs the CLI and reports each rank's exit status on stdout.
WRAPPER = "import sys, h5par.app.cli as c; s = c.main(sys.argv[1:]); print(f'EXIT {s}', flush=True); sys.exit(s)"

IN = '[input]\npath = "in.h5"\ndatasets = ["/x"]\n'
OUT = '[output]\npath = "o.h5"\n'
# mpirun waits 1 s before SIGKILL when a rank exits non-zero, twice: ranks here have exited
# (MPI_Finalize waits for all of them), so a bad case ends in 0.5 s instead of 2.5 s.
FAST_ABORT = {"OMPI_MCA_odls_base_sigkill_timeout": "0"}
# Every input split over all ranks, in blocks of 2 float64 (rank 1 gets some of them).
SHARED = '[run]\nfile_parallel_below = "1B"\nmemory = "64B"\n'


def kernel(body: str) -> str:
    """One ``[[kernels]]`` table."""
    return f"[[kernels]]\n{body}\n"


def write_input(path: Path) -> None:
    """The input every case starts from (small: each case is one short mpirun)."""
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(8.0) - 4.0
        f["m"] = np.arange(24.0).reshape(4, 6)
        f["i"] = np.arange(6, dtype=np.int32)
        f["big"] = np.array([1.0, 2.0, 1e10, 4.0])
        f["names"] = np.array([b"alpha", b"beta"])
        f["comp"] = np.zeros(3, dtype=[("a", "f8"), ("b", "i4")])


def truncate(work: Path) -> None:
    """Cut a real HDF5 file to half its size (a copy that stopped mid-way)."""
    data = (work / "in.h5").read_bytes()
    (work / "in.h5").write_bytes(data[: len(data) // 2])


def corrupt_superblock(work: Path) -> None:
    """Overwrite the HDF5 signature and the superblock after it."""
    data = bytearray((work / "in.h5").read_bytes())
    data[0:64] = b"\xa5" * 64
    (work / "in.h5").write_bytes(bytes(data))


def corrupt_root_group(work: Path) -> None:
    """Overwrite the root group's object header, B-tree and heap (bytes 96 to 1096)."""
    data = bytearray((work / "in.h5").read_bytes())
    data[96:1096] = b"\xa5" * 1000
    (work / "in.h5").write_bytes(bytes(data))


def corrupt_dataset_header(work: Path) -> None:
    """Overwrite the object header of ``/m``, in the middle of the file."""
    with h5py.File(work / "in.h5", "r") as f:
        address = h5py.h5o.get_info(f["m"].id).addr
    data = bytearray((work / "in.h5").read_bytes())
    data[address : address + 64] = b"\xa5" * 64
    (work / "in.h5").write_bytes(bytes(data))


def empty_folder(name: str) -> Callable[[Path], None]:
    """A preparation that makes an empty folder ``name`` (e.g. for an input path)."""
    return lambda work: (work / name).mkdir()


def netcdf3(name: str, version: int) -> Callable[[Path], None]:
    """A preparation writing ``name`` as the start of a netCDF-3 file (b"CDF", ``version``)."""
    header = b"CDF" + bytes([version]) + b"\x00\x00\x00\x00" + b"\x00" * 24
    return lambda work: (work / name).write_bytes(header)


def second_input(work: Path) -> None:
    """A second input, ``in2.h5``, like the first."""
    shutil.copyfile(work / "in.h5", work / "in2.h5")


def second_input_and_its_output(work: Path) -> None:
    """A second input whose output ``in2_o.h5`` exists already."""
    second_input(work)
    (work / "in2_o.h5").write_bytes(b"an earlier result")


def second_input_not_hdf5(work: Path) -> None:
    """A second input, ``in2.h5``, that is not HDF5."""
    (work / "in2.h5").write_bytes(b"not an HDF5 file either")


BOOM = """\
from mpi4py import MPI


def on_rank_one(x):
    if MPI.COMM_WORLD.rank == 1:
        raise ValueError("boom")
    return -x
"""


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad job: its text (after ``version = 1``), what the error line must contain."""

    job: str
    expect: tuple[str, ...]
    status: int = 2
    args: tuple[str, ...] = ()
    prepare: Callable[[Path], None] | None = None
    version: bool = True  # prepend "version = 1"
    run: str = "job.toml"  # the job file given to ``h5par run``
    modules: Mapping[str, str] = dataclasses.field(default_factory=dict)  # on PYTHONPATH


CASES: dict[str, Case] = {
    # --- the job file itself -------------------------------------------------------------
    "bad toml": Case("[input\n", ("is not valid TOML", "job.toml")),
    "job file missing": Case(
        IN + OUT, ("cannot read job file", "nojob.toml", "No such file"), run="nojob.toml"
    ),
    "empty job": Case("", ("input.path is missing", "valid: a file, a glob, or a list")),
    "bad version": Case("version = 2\n" + IN + OUT, ("version = 2", "valid: 1"), version=False),
    "unknown top-level key": Case(
        'outptu = "x"\n' + IN + OUT,
        ("unknown key 'outptu'", "valid: version, input, output, kernels, derived, run"),
    ),
    "unknown key in input": Case(
        '[input]\npath = "in.h5"\nfile = 1\n' + OUT,
        (
            "input: unknown key 'file'",
            "valid: path, datasets, select, driver, memb_size, combine, axis, order_by",
        ),
    ),
    "unknown key in output": Case(
        IN + '[output]\npath = "o.h5"\ncompress = "gzip"\n',
        ("output: unknown key 'compress'", "valid: path, in_place, overwrite"),
    ),
    "unknown key in run": Case(
        IN + OUT + '[run]\nmemroy = "1GiB"\n',
        ("run: unknown key 'memroy'", "valid: memory, file_parallel_below, respect_fill_value"),
    ),
    "wrong type": Case(
        IN + '[output]\npath = "o.h5"\noverwrite = "no"\n',
        ("output.overwrite = 'no' has the wrong type", "valid: true/false"),
    ),
    "set without =": Case(
        IN + OUT, ("--set 'nonsense'", "expected KEY=VALUE"), args=("--set", "nonsense")
    ),
    "set unknown key": Case(
        IN + OUT,
        ("input: unknown key 'pth'", "valid: path, datasets"),
        args=("--set", "input.pth=x.h5"),
    ),
    "set kernel index out of range": Case(
        IN + OUT + kernel('name = "clip"\nmin = 0'),
        ("kernels.3.min=1", "index '3'", "valid: 0..0"),
        args=("--set", "kernels.3.min=1"),
    ),
    # --- inputs --------------------------------------------------------------------------
    "missing input": Case(
        '[input]\npath = "gone.h5"\n' + OUT, ("input.path 'gone.h5': no such file",)
    ),
    "input glob matches nothing": Case(
        '[input]\npath = "run/snap_*.h5"\n' + OUT, ("input.path 'run/snap_*.h5' matches no file",)
    ),
    "input is a folder": Case(
        '[input]\npath = "sub"\n' + OUT,
        ("input.path 'sub' is a folder, not a file",),
        prepare=empty_folder("sub"),
    ),
    "input netCDF-3 classic": Case(
        '[input]\npath = "old.nc"\n' + OUT + kernel('name = "abs"'),
        ("old.nc' is a netCDF-3 file (classic format)", "nccopy -k nc4 ", "old_nc4.nc`"),
        prepare=netcdf3("old.nc", 1),
    ),
    "input netCDF-3 64-bit offset": Case(
        '[input]\npath = "old.nc"\n' + OUT + kernel('name = "abs"'),
        ("old.nc' is a netCDF-3 file (64-bit offset format)", "nccopy -k nc4"),
        prepare=netcdf3("old.nc", 2),
    ),
    "input not hdf5": Case(
        '[input]\npath = "existing.h5"\n' + OUT + kernel('name = "abs"'),
        ("existing.h5", "is not an HDF5 file"),
    ),
    "input truncated": Case(
        IN + OUT + kernel('name = "abs"'), ("in.h5", "truncated"), prepare=truncate
    ),
    "input superblock corrupt": Case(
        IN + OUT + kernel('name = "abs"'),
        ("in.h5", "is not an HDF5 file"),
        prepare=corrupt_superblock,
    ),
    "input root group corrupt": Case(
        IN + OUT + kernel('name = "abs"'),
        ("in.h5", "may be corrupt", "bad object header"),
        prepare=corrupt_root_group,
    ),
    "input dataset header corrupt": Case(
        IN + OUT + kernel('name = "abs"'),
        ("/m", "in.h5", "may be corrupt", "bad object header"),
        prepare=corrupt_dataset_header,
    ),
    "unknown driver": Case(
        '[input]\npath = "in.h5"\ndriver = "mpiposix"\n' + OUT,
        ("driver = 'mpiposix'", "valid: auto, mpio, sec2, core, family, stdio"),
    ),
    "memb_size without family": Case(
        '[input]\npath = "in.h5"\nmemb_size = "1MiB"\n' + OUT,
        ("input.memb_size", "driver = 'family'"),
    ),
    "dataset pattern matches nothing": Case(
        '[input]\npath = "in.h5"\ndatasets = ["/nowhere/*"]\n' + OUT + kernel('name = "abs"'),
        ("dataset pattern '/nowhere/*' matches no dataset", "datasets: /big, /comp, /i"),
    ),
    "dataset named exactly is missing": Case(
        '[input]\npath = "in.h5"\ndatasets = ["/y"]\n' + OUT + kernel('name = "abs"'),
        ("dataset pattern '/y' matches no dataset", "/x"),
    ),
    # --- outputs -------------------------------------------------------------------------
    "output exists": Case(
        IN + '[output]\npath = "existing.h5"\n' + kernel('name = "abs"'),
        ("existing.h5' exists", "overwrite = true", "--overwrite"),
    ),
    "output folder under a file": Case(  # a missing folder is created, this one cannot be
        IN + '[output]\npath = "in.h5/nope/o.h5"\n' + kernel('name = "abs"'),
        ("output folder", "nope' cannot be created", "in.h5' is not a folder"),
    ),
    "output folder is /proc": Case(  # root may write anywhere, but not there
        IN + '[output]\npath = "/proc/o.h5"\n' + kernel('name = "abs"'),
        ("output folder '/proc' is not writable",),
    ),
    "output is the input": Case(
        IN + '[output]\npath = "in.h5"\n' + kernel('name = "abs"'),
        ("in.h5' would overwrite an input", "in_place = true"),
    ),
    "in_place and output path": Case(
        IN + '[output]\npath = "o.h5"\nin_place = true\n',
        ("give either path or in_place = true, not both",),
    ),
    "unknown layout": Case(
        IN + '[output]\npath = "o.h5"\nlayout = "perrank"\n',
        ("output.layout = 'perrank'", "valid: single, subfiled"),
    ),
    "subfiled in place": Case(
        IN + '[output]\nin_place = true\nlayout = "subfiled"\n' + kernel('name = "abs"'),
        ("output.layout = 'subfiled' needs an output file", "valid with in_place: 'single'"),
    ),
    "bad compression": Case(
        IN + '[output]\npath = "o.h5"\ncompression = "zstd"\n',
        ("compression = 'zstd'", "valid: keep, gzip, lzf, none"),
    ),
    "bad compression_level": Case(
        IN + '[output]\npath = "o.h5"\ncompression = "gzip"\ncompression_level = 12\n',
        ("compression_level = 12", "valid: 0..9"),
    ),
    "bad chunks word": Case(
        IN + '[output]\npath = "o.h5"\nchunks = "big"\n',
        ("chunks = 'big'", "valid: 'keep', 'auto', [n, ...]"),
    ),
    "bad chunks rank": Case(
        '[input]\npath = "in.h5"\ndatasets = ["/x"]\n[output]\npath = "o.h5"\nchunks = [2, 2]\n',
        ("/x", "chunks = [2, 2]", "1-d"),
    ),
    # --- kernels -------------------------------------------------------------------------
    "unknown kernel": Case(
        IN + OUT + kernel('name = "blur"'),
        (
            "unknown kernel 'blur'",
            "valid: abs, astype, broadcast, clip, fill, gradient, moving_mean",
        ),
    ),
    "unknown kernel parameter": Case(
        IN + OUT + kernel('name = "clip"\nlow = 0'),
        ("unknown parameter 'low'", "valid: min, max"),
    ),
    "missing kernel parameter": Case(
        IN + OUT + kernel('name = "astype"'),
        ("missing required parameter 'dtype'", "parameters: dtype, overflow"),
    ),
    "bad dtype": Case(
        IN + OUT + kernel('name = "astype"\ndtype = "float128x"'),
        ("dtype 'float128x'", "valid: e.g. float32"),
    ),
    "unknown overflow mode": Case(
        IN + OUT + kernel('name = "astype"\ndtype = "int16"\noverflow = "clamp"'),
        ("overflow = 'clamp'", "valid: error, saturate, wrap"),
    ),
    "astype wrap from float": Case(
        '[input]\npath = "in.h5"\ndatasets = ["/big"]\n'
        + OUT
        + kernel('name = "astype"\ndtype = "int16"\noverflow = "wrap"'),
        ("/big", "overflow = 'wrap'", "valid for float → integer: 'error', 'saturate'"),
    ),
    "astype overflow": Case(
        '[input]\npath = "in.h5"\ndatasets = ["/big"]\n'
        + OUT
        + kernel('name = "astype"\ndtype = "int16"'),
        ("/big", "value 10000000000.0 at index (2,) does not fit int16", "overflow = 'saturate'"),
        status=1,
    ),
    "clip on strings": Case(
        '[input]\npath = "in.h5"\ndatasets = ["/names"]\n' + OUT + kernel('name = "clip"\nmin = 0'),
        ("dataset /names (|S5, shape (2,))", "kernel 'clip' cannot process dtype", "valid:"),
    ),
    "scale on a compound": Case(
        '[input]\npath = "in.h5"\ndatasets = ["/comp"]\n'
        + OUT
        + kernel('name = "scale"\nfactor = 2'),
        ("dataset /comp", "kernel 'scale' cannot process dtype", "valid:"),
    ),
    "reshape to another element count": Case(
        '[input]\npath = "in.h5"\ndatasets = ["/m"]\n'
        + OUT
        + kernel('name = "reshape"\nshape = [5, 5]'),
        ("dataset /m", "cannot reshape (4, 6) (24 elements) into (5, 5)", "valid:"),
    ),
    "broadcast index out of range": Case(
        '[input]\npath = "in.h5"\ndatasets = ["/m"]\n'
        + OUT
        + kernel('name = "broadcast"\nindex = 10'),
        ("dataset /m", "index = 10 is outside axis 0 of length 4", "valid: -4..3"),
    ),
    "smooth with an unknown mode": Case(
        IN + OUT + kernel('name = "smooth"\nsize = 3\nmode = "mirror"'),
        ("mode = 'mirror'", "valid: reflect, nearest, constant, wrap"),
    ),
    "smooth axis missing in the dataset": Case(
        '[input]\npath = "in.h5"\ndatasets = ["/m"]\n'
        + OUT
        + kernel('name = "smooth"\nsize = 3\naxis = 2'),
        ("dataset /m", "axis = 2 does not exist in a 2-d dataset", "valid: -2..1"),
    ),
    "reduce along an axis with two ops": Case(
        IN + OUT + kernel('name = "reduce"\nop = ["min", "max"]\naxis = 0'),
        ("op = ['min', 'max'] with axis", "valid: one of min, max, sum, mean, std, count"),
    ),
    "kernel after a reduction along axes": Case(
        IN + OUT + kernel('name = "reduce"\nop = "mean"\naxis = 0') + kernel('name = "abs"'),
        ("a reduction along axes ends the chain", "valid: make it the last kernel"),
    ),
    "smoothing in place": Case(
        IN + "[output]\nin_place = true\n" + kernel('name = "smooth"\nsize = 3'),
        ("in-place runs cannot use kernels with neighbours", "write an output file"),
    ),
    "python kernel wrong shape": Case(
        '[input]\npath = "in.h5"\ndatasets = ["/m"]\n'
        + OUT
        + kernel('name = "python"\nfunction = "numpy:ravel"'),
        (
            "/m",
            "numpy:ravel: returned shape (24,) for a block of shape (4, 6)",
        ),
        status=1,
    ),
    "python kernel wrong dtype": Case(
        '[input]\npath = "in.h5"\ndatasets = ["/x"]\n'
        + OUT
        + kernel('name = "python"\nfunction = "numpy:isnan"'),
        ("/x", "numpy:isnan: returned dtype bool, expected float64", "dtype = 'bool'"),
        status=1,
    ),
    "python kernel module missing": Case(
        IN + OUT + kernel('name = "python"\nfunction = "no_such_module_h5par:f"'),
        ("cannot import 'no_such_module_h5par'",),
    ),
    "python kernel function missing": Case(
        IN + OUT + kernel('name = "python"\nfunction = "numpy:no_such_function"'),
        ("'numpy' has no attribute 'no_such_function'",),
    ),
    "python kernel module fails to import": Case(
        IN + OUT + kernel('name = "python"\nfunction = "broken_kernel:f"'),
        ("importing 'broken_kernel' failed: SyntaxError",),
        modules={"broken_kernel": "def f(x):\n    return x +\n"},
    ),
    "python kernel raises on rank 1 only": Case(
        IN + OUT + kernel('name = "python"\nfunction = "boom_kernel:on_rank_one"') + SHARED,
        ("python kernel boom_kernel:on_rank_one: ValueError: boom", "rank 1 of 2", "/x"),
        status=1,
        modules={"boom_kernel": BOOM},
    ),
    "python kernel not module:function": Case(
        IN + OUT + kernel('name = "python"\nfunction = "numpy.negative"'),
        ("function = 'numpy.negative'", "valid: 'package.module:function'"),
    ),
    "unsafe expression": Case(
        IN + OUT + kernel('name = "where"\ncondition = "__import__(\'os\')"\nvalue = "0"'),
        ("function calls other than abs() and isnan()", "valid: numbers, x"),
    ),
    "expression syntax error": Case(
        IN + OUT + kernel('name = "where"\ncondition = "x <"\nvalue = "0"'),
        ("expression 'x <': syntax error", "valid: numbers, x"),
    ),
    # --- memory --------------------------------------------------------------------------
    "memory unit": Case(
        IN + OUT + '[run]\nmemory = "1 elephant"\n',
        ("run.memory: invalid size '1 elephant'", "MiB"),
    ),
    "memory zero": Case(
        IN + OUT + '[run]\nmemory = "0"\n', ("run.memory: invalid size '0'", "positive")
    ),
    "memory negative": Case(
        IN + OUT + '[run]\nmemory = "-5MiB"\n', ("run.memory: invalid size '-5MiB'", "positive")
    ),
    "memory below one element": Case(
        '[input]\npath = "in.h5"\ndatasets = ["/x"]\n'
        + OUT
        + kernel('name = "abs"')
        + '[run]\nmemory = "16B"\n',
        ("memory = 16 B is too small for dataset /x", "valid: at least 32 B"),
    ),
    "memory below a broadcast slice": Case(
        '[input]\npath = "in.h5"\ndatasets = ["/m"]\n'
        + OUT
        + kernel('name = "broadcast"')
        + '[run]\nmemory = "64B"\n',
        ("too small for broadcast on dataset /m", "(1, 6) (48 B)", "valid: at least 96 B"),
    ),
    # --- several inputs: nothing may be written when one of them is bad ---------------------
    "one of two outputs exists": Case(
        '[input]\npath = ["in.h5", "in2.h5"]\ndatasets = ["/x"]\n[output]\npath = "{stem}_o.h5"\n'
        + kernel('name = "abs"'),
        ("in2_o.h5' exists",),
        prepare=second_input_and_its_output,
    ),
    "one of two inputs not hdf5": Case(
        '[input]\npath = ["in.h5", "in2.h5"]\ndatasets = ["/x"]\n[output]\npath = "{stem}_o.h5"\n'
        + kernel('name = "abs"'),
        ("in2.h5' is not an HDF5 file",),
        prepare=second_input_not_hdf5,
    ),
}


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every name under ``folder`` with its bytes (None for folders)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A job folder holding ``in.h5``, a file that is not HDF5 and a job."""
    folder = tmp_path / "work"
    folder.mkdir()
    write_input(folder / "in.h5")
    (folder / "existing.h5").write_bytes(b"not an HDF5 file")
    return folder


def run_bad(
    run_mpi: Callable[..., subprocess.CompletedProcess[str]],
    work: Path,
    status: int,
    expect: Sequence[str],
    args: Sequence[str] = (),
    job: Path | None = None,
    env: Mapping[str, str] | None = None,
    python: str | Path = sys.executable,
) -> str:
    """Run ``h5par run`` on 2 ranks, check the contract for a bad input, return the error line."""
    before = snapshot(work)
    job = work / "job.toml" if job is None else job
    env = {**FAST_ABORT, **(env or {})}
    result = run_mpi(2, ["-c", WRAPPER, "run", str(job), *args], env=env, python=python)
    report = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert re.findall(r"EXIT (\d+)", result.stdout) == [str(status)] * 2, report
    assert result.returncode == status, report
    errors = [line for line in result.stderr.splitlines() if line.startswith("h5par: error:")]
    assert len(errors) == 1, report
    for text in expect:
        assert text in errors[0], f"{text!r} not in {errors[0]!r}"
    assert "Traceback" not in result.stderr, report
    assert "HDF5-DIAG" not in result.stderr, report
    assert snapshot(work) == before, report  # no output, no work folder, input untouched
    return errors[0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_same_status_on_every_rank_and_touches_nothing(
    run_mpi, tmp_path, work, name
) -> None:
    case = CASES[name]
    (work / "job.toml").write_text(("version = 1\n" if case.version else "") + case.job)
    if case.prepare is not None:
        case.prepare(work)
    env = {}
    if case.modules:  # outside the job folder: Python may write __pycache__ next to them
        lib = tmp_path / "lib"
        lib.mkdir()
        for module, text in case.modules.items():
            (lib / f"{module}.py").write_text(text)
        env["PYTHONPATH"] = str(lib)
    line = run_bad(
        run_mpi,
        work,
        case.status,
        case.expect,
        case.args,
        work / case.run,
        env,
    )
    print(f"[{name}] exit {case.status}: {line}")


@pytest.mark.parametrize("where", ["after the verb", "before the verb"])
def test_debug_prints_the_traceback(run_mpi, work, where) -> None:
    (work / "job.toml").write_text("version = 1\n" + IN + OUT + kernel('name = "blur"'))
    before = snapshot(work)
    args = ["run", str(work / "job.toml")]
    args = [*args, "--debug"] if where == "after the verb" else ["--debug", *args]
    result = run_mpi(2, ["-c", WRAPPER, *args], env=FAST_ABORT)
    assert re.findall(r"EXIT (\d+)", result.stdout) == ["2", "2"], result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert "UsageError" in result.stderr and "unknown kernel 'blur'" in result.stderr
    assert snapshot(work) == before


# --- cases that need more than a job file --------------------------------------------------


def test_locked_input_names_the_fix(run_mpi, work) -> None:
    (work / "job.toml").write_text(IN + OUT + kernel('name = "abs"'))
    with open(work / "in.h5", "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another program holds the file
        try:
            line = run_bad(
                run_mpi,
                work,
                1,
                ("in.h5", "locked", "HDF5_USE_FILE_LOCKING=FALSE"),
                env={"HDF5_USE_FILE_LOCKING": "TRUE"},
            )
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
    print(f"[locked input] exit 1: {line}")


def _sh(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)


@contextlib.contextmanager
def read_only_mount(folder: Path) -> Iterator[None]:
    """``folder`` bind-mounted read-only onto itself (skip when mounting is not allowed)."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a read-only folder as root")
    bound = _sh("mount", "--bind", str(folder), str(folder))
    if bound.returncode != 0:
        pytest.skip(f"cannot bind-mount here (a read-only folder needs it): {bound.stderr}")
    try:
        remount = _sh("mount", "-o", "remount,bind,ro", str(folder))
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {remount.stderr}")
        yield
    finally:
        _sh("umount", str(folder))


@contextlib.contextmanager
def immutable(folder: Path) -> Iterator[None]:
    """``folder`` with the immutable attribute (skip when chattr is not possible)."""
    if shutil.which("chattr") is None:
        pytest.skip("no chattr command: cannot make an immutable folder")
    made = _sh("chattr", "+i", str(folder))
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not possible here: {made.stderr}")
    try:
        yield
    finally:
        _sh("chattr", "-i", str(folder))


@pytest.mark.parametrize("how", ["read-only mount", "immutable folder"])
def test_output_folder_not_writable(run_mpi, work, how) -> None:
    # We run as root: permission bits do not stop us, a read-only file system does.
    (work / "locked").mkdir()
    (work / "job.toml").write_text(IN + '[output]\npath = "locked/o.h5"\n' + kernel('name = "abs"'))
    guard = read_only_mount if how == "read-only mount" else immutable
    with guard(work / "locked"):
        reason = "read-only file system" if how == "read-only mount" else "not writable"
        line = run_bad(run_mpi, work, 2, ("output folder", "locked' is not writable", reason))
    print(f"[{how}] exit 2: {line}")


# --- serial h5py under mpirun ----------------------------------------------------------------


def test_serial_h5py_under_mpirun_says_how_to_fix(run_mpi, work, serial_python) -> None:
    env = {"PYTHONPATH": str(REPO)}
    probe = run_mpi(
        1,
        ["-c", "import h5py, h5par; print(h5py.get_config().mpi, h5par.__file__)"],
        env=env,
        python=serial_python,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["False", str(REPO / "h5par" / "__init__.py")]
    (work / "job.toml").write_text(IN + OUT + kernel('name = "abs"') + SHARED)
    line = run_bad(
        run_mpi,
        work,
        1,
        ("h5py was built without MPI", "2 ranks", "h5par info"),
        env=env,
        python=serial_python,
    )
    print(f"[serial h5py] exit 1: {line}")
