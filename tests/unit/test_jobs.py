"""Job files: loading, overrides, output naming and validation messages (no MPI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from h5par.engine.jobs import apply_overrides, job_from_dict, load_job
from h5par.errors import UsageError


@pytest.fixture
def dumps(tmp_path: Path) -> Path:
    for i in range(3):
        (tmp_path / f"snap_{i:03d}.h5").write_bytes(b"")
    return tmp_path


def base_job(**changes) -> dict:
    job = {
        "version": 1,
        "input": {"path": "snap_*.h5", "datasets": ["/*/temperature"]},
        "output": {"path": "clean/{stem}_clean.h5"},
        "kernels": [{"name": "clip", "min": 0.0}],
        "run": {"memory": "64MiB"},
    }
    for key, value in changes.items():
        table, _, name = key.partition("__")
        if name:
            job.setdefault(table, {})[name] = value
        else:
            job[table] = value
    return job


def test_glob_inputs_and_output_pattern(dumps) -> None:
    job = job_from_dict(base_job(), base=dumps)
    assert [f.input.name for f in job.files] == ["snap_000.h5", "snap_001.h5", "snap_002.h5"]
    assert [f.output for f in job.files] == [
        dumps / "clean" / f"snap_{i:03d}_clean.h5" for i in range(3)
    ]
    assert job.memory == 64 * 2**20 and job.datasets == ["/*/temperature"]


def test_index_and_name_placeholders(dumps) -> None:
    job = job_from_dict(base_job(output__path="out_{index}_{name}"), base=dumps)
    assert job.files[2].output == dumps / "out_2_snap_002.h5"


def test_load_job_resolves_against_its_folder_and_applies_overrides(dumps) -> None:
    (dumps / "job.toml").write_text(
        'version = 1\n[input]\npath = "snap_000.h5"\n[output]\npath = "o.h5"\n'
    )
    job = load_job(
        dumps / "job.toml", ["input.path=snap_001.h5", "output.overwrite=true", "run.memory=1MiB"]
    )
    assert job.files[0].input == dumps / "snap_001.h5" and job.overwrite and job.memory == 2**20
    assert "--set input.path=snap_001.h5" in job.text


def test_overrides_reach_into_kernel_lists() -> None:
    data = apply_overrides(
        {"kernels": [{"name": "clip", "min": 0}]}, ["kernels.0.min=-1.5", "kernels.0.max=2"]
    )
    assert data["kernels"] == [{"name": "clip", "min": -1.5, "max": 2}]
    with pytest.raises(UsageError, match=r"index '3' \(valid: 0..0\)"):
        apply_overrides({"kernels": [{"name": "abs"}]}, ["kernels.3.min=1"])
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        apply_overrides({}, ["memory"])


BAD_JOBS = [
    (
        {"inputs": {}},
        "job: unknown key 'inputs' (valid: version, input, output, kernels, derived, run)",
    ),
    ({"version": 2}, "version = 2 (valid: 1)"),
    (
        {"input__pth": "x"},
        "input: unknown key 'pth' (valid: path, datasets, select, driver, memb_size, combine, axis, order_by)",
    ),
    ({"input__path": "nothing_*.h5"}, "input.path 'nothing_*.h5' matches no file"),
    ({"input__path": 5}, "input.path = 5 has the wrong type (valid: a string or a list)"),
    (
        {"output__overwrite": "yes"},
        "output.overwrite = 'yes' has the wrong type (valid: true/false)",
    ),
    ({"output__compression": "zstd"}, "output.compression = 'zstd' (valid: keep, gzip, lzf, none)"),
    ({"output__path": "same.h5"}, "output.path = 'same.h5' names one file for 3 inputs"),
    ({"output__path": "{stem}.h5"}, "would overwrite an input"),
    ({"output__path": "{stm}.h5"}, "bad placeholder 'stm'"),
    ({"output": {}}, "output.path is missing"),
    ({"output__in_place": True}, "give either path or in_place = true, not both"),
    ({"kernels": [{"name": "clamp"}]}, "unknown kernel 'clamp' (valid: abs, astype"),
    (
        {"kernels": [{"name": "clip", "mn": 0}]},
        "kernel 'clip': unknown parameter 'mn' (valid: min, max)",
    ),
    (
        {"kernels": [{"name": "astype", "dtype": "float33"}]},
        "dtype 'float33' is not a numpy dtype name",
    ),
    (
        {"kernels": [{"name": "where", "condition": "import os", "value": "0"}]},
        "expression 'import os': syntax error",
    ),
    ({"run__memory": "lots"}, "run.memory: invalid size 'lots'"),
    (
        {"run__threads": 4},
        "run: unknown key 'threads' (valid: memory, file_parallel_below, respect_fill_value, watchdog)",
    ),
    ({"output__layout": "perrank"}, "output.layout = 'perrank' (valid: single, subfiled)"),
    ({"output__unselected": "keep"}, "output.unselected = 'keep' (valid: copy, drop)"),
    ({"output__unselected": True}, "output.unselected = True has the wrong type (valid: a string)"),
    ({"output__chunks": "big"}, "output chunks = 'big' (valid: 'keep', 'auto', [n, ...])"),
]


@pytest.mark.parametrize(("change", "message"), BAD_JOBS)
def test_bad_jobs_name_the_key_and_valid_choices(dumps, change, message) -> None:
    job = base_job()
    for key, value in change.items():
        table, _, name = key.partition("__")
        if name:
            job.setdefault(table, {})[name] = value
        else:
            job[table] = value
    with pytest.raises(UsageError) as info:
        job_from_dict(job, base=dumps)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_toml_is_one_line(tmp_path) -> None:
    (tmp_path / "job.toml").write_text("[input\npath = 1\n")
    with pytest.raises(UsageError, match="is not valid TOML"):
        load_job(tmp_path / "job.toml")
    with pytest.raises(UsageError, match="cannot read job file"):
        load_job(tmp_path / "missing.toml")


@pytest.mark.parametrize(("value", "expected"), [(0, 0), ("0", 0), ("1MiB", 2**20)])
def test_file_parallel_below_zero_shares_every_file(dumps, value, expected) -> None:
    job = job_from_dict(base_job(run__file_parallel_below=value), base=dumps)
    assert job.file_parallel_below == expected


def test_select_table_is_parsed_when_the_job_is_loaded(dumps) -> None:
    job = job_from_dict(base_job(input__select={"/*/temperature": "::2, 0"}), base=dumps)
    assert job.select == {"/*/temperature": "::2, 0"}
    with pytest.raises(UsageError, match=r"input\.select\./x: selection 'x y'"):
        job_from_dict(base_job(input__select={"/x": "x y"}), base=dumps)
    with pytest.raises(UsageError, match="expected a string"):
        job_from_dict(base_job(input__select={"/x": 3}), base=dumps)


# Inputs are told apart by file identity (device + inode), for every kind of job: a link
# or another name of a listed file would be processed twice (in place: scaled twice).
ALIASES = {
    "symlink in a glob": ("run/*.h5", lambda d: (d / "run" / "latest.h5").symlink_to("snap_3.h5")),
    "hard link in a glob": (
        "run/*.h5",
        lambda d: (d / "run" / "z.h5").hardlink_to(d / "run" / "snap_3.h5"),
    ),
    "dot-dot after a link in a list": (
        ["run/snap_3.h5", "run/x/../snap_3.h5"],
        lambda d: ((d / "run" / "sub").mkdir(), (d / "run" / "x").symlink_to("sub")),
    ),
}
KINDS = {
    "in place": {"in_place": True},
    "output pattern": {"path": "out/{stem}_clean.h5"},
    "reduce only": {},
}


@pytest.mark.parametrize("alias", ALIASES, ids=str)
@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_two_names_of_one_input_are_refused_naming_both(tmp_path, alias, kind) -> None:
    (tmp_path / "run").mkdir()
    for i in (2, 3):
        (tmp_path / "run" / f"snap_{i}.h5").write_bytes(b"")
    pattern, make = ALIASES[alias]
    make(tmp_path)
    kernels = (
        [{"name": "reduce", "op": "sum"}]
        if kind == "reduce only"
        else [{"name": "scale", "factor": 2}]
    )
    job = {"version": 1, "input": {"path": pattern}, "output": KINDS[kind], "kernels": kernels}
    with pytest.raises(UsageError, match="are the same file") as info:
        job_from_dict(job, base=tmp_path)
    message = str(info.value)
    assert "snap_3.h5" in message and (
        "latest.h5" in message or "z.h5" in message or "x/../" in message
    )
    assert "\n" not in message


def test_dot_dot_out_of_a_real_folder_is_tidied_away(tmp_path) -> None:
    (tmp_path / "jobs").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.h5").write_bytes(b"")
    job = {
        "version": 1,
        "input": {"path": ["../data/*.h5", "../data/../data/a.h5"]},
        "output": {"path": "../clean/{stem}_c.h5"},
        "kernels": [{"name": "abs"}],
    }
    (file,) = job_from_dict(job, base=tmp_path / "jobs").files
    assert file.input == tmp_path / "data" / "a.h5"
    assert file.output == tmp_path / "clean" / "a_c.h5"


def test_the_same_name_twice_is_one_input(tmp_path) -> None:
    (tmp_path / "a.h5").write_bytes(b"")
    job = {"version": 1, "input": {"path": ["a.h5", "*.h5"]}, "output": {"in_place": True}}
    assert [f.input.name for f in job_from_dict(job, base=tmp_path).files] == ["a.h5"]


def test_an_existing_file_whose_name_looks_like_a_glob_is_that_file(tmp_path) -> None:
    # "snap[1].h5" was a glob: it matched snap1.h5, which an in-place job then changed.
    for name in ("snap[1].h5", "snap1.h5"):
        (tmp_path / name).write_bytes(b"")
    spec = {
        "version": 1,
        "input": {"path": "snap[1].h5"},
        "output": {"in_place": True},
        "kernels": [{"name": "scale", "factor": 2}],
    }
    assert [f.input.name for f in job_from_dict(spec, base=tmp_path).files] == ["snap[1].h5"]
    (tmp_path / "snap[1].h5").unlink()  # no such file: a glob again
    assert [f.input.name for f in job_from_dict(spec, base=tmp_path).files] == ["snap1.h5"]


def test_a_dataset_pattern_naming_an_existing_dataset_is_that_dataset() -> None:
    # "/x[1]" was only a glob: it chose /x1 (changed in place) and never /x[1] itself.
    from h5par.core.globs import select_paths

    assert select_paths(["/x1", "/x[1]"], ["/x[1]"]) == ["/x[1]"]
    assert select_paths(["/x1", "/x[1]"], ["x[1]"]) == ["/x[1]"]
    assert select_paths(["/x1", "/x2"], ["/x[1]"]) == ["/x1"]  # no such dataset: a glob
