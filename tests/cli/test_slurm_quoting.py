"""`h5par submit`: no value reaching the batch script can end a line or a word (no SLURM).

Every value (job path, folder, ``--set`` values, python, partition, time...) is refused
with one line when it holds a control character, and otherwise quoted: the shell lines
are run with a fake launcher on PATH, which records the command it was given.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from h5par.app.slurm import BatchOptions, batch_script, submit_options
from h5par.errors import UsageError

JOB = """version = 1
[input]
path = "in.h5"
[output]
path = "out.h5"
[[kernels]]
name = "clip"
min = 0.0
"""
# What sbatch reads after `#SBATCH --key=`: a bare word, or a double-quoted one without
# the characters sbatch's own quoting would interpret (" and \; # escaped for old sbatch).
DIRECTIVE = re.compile(r'#SBATCH --[a-z-]+(?:=[A-Za-z0-9_./+@%:,=~-]+|="(?:[^"\\#]|\\#)*")?')
ODD = "d i r 's $(touch PWNED) ; `touch PWNED` & #x *"  # a folder name
CONTROLS = ["\n", "\r", "\t", "\x1b[2J", "\x7f", "\u2028", "\u202e"]


def submit(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "h5par", "submit", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def pwned(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*PWNED*") if p.name == "PWNED"]


def one_error(done: subprocess.CompletedProcess[str], message: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("h5par: error: ") and message in line, line


@pytest.mark.parametrize("control", CONTROLS, ids=repr)
def test_a_control_character_in_the_job_name_or_a_set_value_is_refused(tmp_path, control) -> None:
    (tmp_path / "in.h5").write_bytes(b"")
    name = f"job{control}touch PWNED #.toml"
    (tmp_path / name).write_text(JOB)
    one_error(submit([name, "--dry-run"], tmp_path), "contains the control character")
    (tmp_path / "job.toml").write_text(JOB)
    value = f"run.memory=1MiB{control}touch PWNED"
    one_error(submit(["job.toml", "--set", value, "--dry-run"], tmp_path), "control character")
    assert not pwned(tmp_path)


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ('job"x.toml', [], "cannot name a path with a double quote, a backslash or %"),
        ("job\\x.toml", [], "cannot name a path with a double quote, a backslash or %"),
        ("job%x.toml", [], "cannot name a path with a double quote, a backslash or %"),
        ("job.toml", ["--ntasks", "\u00b2"], "--ntasks '\u00b2': expected a whole number"),
        ("job.toml", ["--time", "\u0660\u0662:00:00"], "expected HH:MM:SS"),
        ("job.toml", ["--partition", "debug\n#SBATCH --x"], "expected a SLURM name"),
    ],
    ids=repr,
)
def test_values_sbatch_cannot_read_are_refused(tmp_path, name, args, message) -> None:
    (tmp_path / "in.h5").write_bytes(b"")
    (tmp_path / name).write_text(JOB)
    one_error(submit([name, *args, "--dry-run"], tmp_path), message)


def sbatch_option(line: str) -> tuple[str, str]:
    """``(key, value)`` of a ``#SBATCH --key=value`` line as sbatch reads it: quotes (" or ')
    group, a backslash escapes the next character, a bare # starts a comment."""
    word, quote, escape = [], "", False
    for char in line.removeprefix("#SBATCH").strip():
        if escape:
            escape = False
        elif char == "\\":
            escape = True
            continue
        elif quote:
            if char == quote:
                quote = ""
                continue
        elif char in "\"'":
            quote = char
            continue
        elif char == "#" or char.isspace():
            break
        word.append(char)
    assert not quote and not escape, line
    key, _, value = "".join(word).partition("=")
    return key, value


def fake_launcher(folder: Path) -> Path:
    """mpirun and srun that write their arguments (NUL-separated) to $ARGS_FILE."""
    folder.mkdir()
    for name in ("mpirun", "srun"):
        fake = folder / name
        fake.write_text('#!/bin/bash\nprintf "%s\\0" "$@" > "$ARGS_FILE"\n')
        fake.chmod(0o755)
    return folder


@pytest.mark.parametrize("launcher", ["mpirun", "srun"])
def test_odd_paths_and_set_values_are_quoted_in_every_line(tmp_path, launcher) -> None:
    folder = tmp_path / ODD
    folder.mkdir()
    job = folder / "job 's $(touch PWNED) #1.toml"
    job.write_text(JOB)
    data = "in $(touch PWNED) 'q' ;`x`.h5"
    (folder / data).write_bytes(b"")
    values = [f"input.path={data}", "run.memory=1MiB", "output.path=o $HOME '\"'.h5"]
    args = [str(job), "--launcher", launcher, "--time", "00:10:00", "--partition", "debug"]
    sets = [item for value in values for item in ("--set", value)]
    args += [*sets, "--dry-run"]
    done = submit(args, tmp_path)
    assert done.returncode == 0, done.stderr
    script = tmp_path / "check.sbatch"
    script.write_text(done.stdout)
    assert subprocess.run(["bash", "-n", str(script)], timeout=10).returncode == 0
    lines = done.stdout.splitlines()
    directives = [i for i, line in enumerate(lines) if line.startswith("#SBATCH")]
    assert all(line.startswith("#") or not line for line in lines[: directives[-1]])
    for i in directives:  # sbatch reads each as one option, up to the closing quote
        assert DIRECTIVE.fullmatch(lines[i]), lines[i]
    options = dict(sbatch_option(line) for line in lines if line.startswith("#SBATCH"))
    assert options["--chdir"] == str(folder)
    assert options["--output"] == str(folder / f"{job.stem}-%j.out")
    bin_dir = fake_launcher(tmp_path / "bin")
    env = dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin", ARGS_FILE=str(tmp_path / "args"))
    env["SLURM_JOB_ID"] = "1"
    ran = subprocess.run(
        ["bash", str(script)], cwd=folder, env=env, capture_output=True, text=True, timeout=30
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    got = (tmp_path / "args").read_text().split("\0")[:-1]
    head = ["--mpi=pmix", "--kill-on-bad-exit=1"] if launcher == "srun" else []
    command = [sys.executable, "-m", "mpi4py", "-m", "h5par", "run", str(job)]
    assert got == head + command + sets
    assert not pwned(tmp_path)


def test_batch_script_refuses_options_it_cannot_carry() -> None:
    for options in (
        BatchOptions(job="/data/a\ntouch PWNED #.toml"),
        BatchOptions(job="/data/a.toml", launcher="mpirun; touch PWNED"),
        BatchOptions(job="/data/a.toml", chdir='/data/"x'),
        BatchOptions(job="/data/a.toml", output="/data/\\x-%j.out"),
        BatchOptions(job="/data/a.toml", run_args=("--set", "a=1\r")),
        BatchOptions(job="/data/a.toml", python="/usr/bin/python\x00"),
        BatchOptions(job="/data/a.toml", nodes="1\ntouch PWNED"),  # type: ignore[arg-type]
    ):
        with pytest.raises(UsageError):
            batch_script(options)
    with pytest.raises(UsageError, match="control character"):
        submit_options("/data/a.toml", python="/usr/bin/python\n")


def test_a_template_job_under_home_stays_one_word(tmp_path) -> None:
    text = batch_script(BatchOptions(job="$HOME/$(touch PWNED) `x`.toml", template=True))
    (line,) = [line for line in text.splitlines() if line.startswith("JOB=")]
    shown = subprocess.run(
        ["bash", "-c", f'{line.split("  #")[0]}; printf %s "$JOB"'],
        cwd=tmp_path,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert shown.stdout == f"{tmp_path}/$(touch PWNED) `x`.toml"
    assert not pwned(tmp_path) and shutil.which("bash")


def test_braces_in_values_are_not_template_placeholders(tmp_path) -> None:
    folder = tmp_path / "{header} {0}"
    folder.mkdir()
    job = folder / "{job}{{change}}.toml"
    options = submit_options(job, run_args=["--set", "output.path={python}.h5"], ntasks=2)
    text = batch_script(options)
    lines = text.splitlines()
    assert f"# Written by `h5par submit` for {job}" in lines
    assert f"JOB={shlex.quote(str(job))}" in lines
    assert "RUN_ARGS=(--set 'output.path={python}.h5')" in lines
    options_read = dict(sbatch_option(line) for line in lines if line.startswith("#SBATCH"))
    assert options_read["--chdir"] == str(folder)
    assert options_read["--job-name"] == "h5par-_job___change__"
