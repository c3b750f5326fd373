"""What a host that does not see the job's files as rank 0 does is told (h5par.engine.shared).

The whole check runs on two simulated hosts in tests/cluster; here its pure parts.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from h5par.engine import shared
from h5par.errors import UsageError
from h5par.parallel.comm import ONE_PROCESS


def test_one_host_checks_nothing_and_leaves_no_probe(tmp_path) -> None:
    (tmp_path / "in.h5").write_bytes(b"x")
    called = []
    digest = lambda: called.append(1) or "d"  # noqa: E731
    inputs = [tmp_path / "in.h5", tmp_path / "gone.h5"]
    shared.check_shared(inputs, {tmp_path: "output"}, ONE_PROCESS, digest=digest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5"] and not called


def test_one_probe_per_existing_folder_the_outputs_are_in_or_below(tmp_path) -> None:
    (tmp_path / "here").mkdir()
    outputs = {tmp_path / "new" / str(i): "output" for i in range(3)}
    outputs[tmp_path / "here"] = "input"
    probes: list = []
    shared._make_probes(outputs, probes)
    assert len(probes) == 2
    by_folder = {Path(made).parent: stands_for for stands_for, made in probes}
    assert by_folder[tmp_path] == {str(tmp_path / "new" / str(i)): "output" for i in range(3)}
    assert by_folder[tmp_path / "here"] == {str(tmp_path / "here"): "input"}
    for _, made in probes:
        assert Path(made).name.startswith(shared.PROBE) and Path(made).stat().st_size == 0


def test_an_output_name_too_long_makes_no_probe_and_no_error(tmp_path) -> None:
    probes: list = []
    shared._make_probes({tmp_path / ("x" * 300) / "y": "output", tmp_path: "output"}, probes)
    assert [Path(made).parent for _, made in probes] == [tmp_path]


def test_a_probe_a_killed_run_left_is_removed_by_the_next(tmp_path) -> None:
    old, recent = tmp_path / f"{shared.PROBE}old", tmp_path / f"{shared.PROBE}recent"
    old.touch(), recent.touch(), (tmp_path / "data.h5").touch()
    os.utime(old, (0, time.time() - 3600))
    probes: list = []
    shared._make_probes({tmp_path: "output"}, probes)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert old.name not in left and recent.name in left and "data.h5" in left


def _seen(*paths: Path) -> list[tuple[str, tuple[int, int] | None]]:
    return [(str(p), shared._identity(str(p))) for p in paths]


def test_inputs_seen_alike_pass(tmp_path) -> None:
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    a.write_bytes(b"1"), b.write_bytes(b"22")
    shared._compare_inputs([str(a), str(b)], _seen(a, b), "n1")
    shared._compare_inputs([str(a)], [(str(a), shared._identity(str(a))), (str(b), None)], "n1")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("missing", "input '{a}' is not shared by every host: missing here, not on n1"),
        ("size", "input '{a}' is not shared by every host: 3 bytes here, 1 on n1"),
        ("time", "input '{a}' is not shared by every host: another file here than on n1"),
        ("extra", "input '{b}' is not shared by every host: here, not on n1"),
    ],
)
def test_inputs_seen_otherwise_name_the_file_and_the_host(tmp_path, change, message) -> None:
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    a.write_bytes(b"1")
    seen, mine = _seen(a), [str(a)]
    if change == "missing":
        a.unlink()
    elif change == "size":
        a.write_bytes(b"333")
    elif change == "time":
        os.utime(a, ns=(0, seen[0][1][1] + 1))
    else:
        b.write_bytes(b"2")
        mine.append(str(b))
    with pytest.raises(UsageError) as caught:
        shared._compare_inputs(mine, seen, "n1")
    assert str(caught.value).startswith(message.format(a=a, b=b)), caught.value
    assert str(caught.value).endswith(
        "(valid: files on a file system every host sees; /tmp is each node's own)"
    )


def test_an_output_folder_without_the_probe_is_named(tmp_path) -> None:
    probes: list = []
    shared._make_probes({tmp_path / "out": "output", tmp_path / "b": "output"}, probes)
    shared._compare_outputs(probes, "n1")
    os.unlink(probes[0][1])
    message = (
        f"output folder '{tmp_path / 'out'}' is not shared by every host: a file n1 made in "
        f"'{tmp_path}' is missing here (valid: files on a file system every host sees; "
        "/tmp is each node's own)"
    )
    with pytest.raises(UsageError) as caught:
        shared._compare_outputs(probes, "n1")
    assert str(caught.value) == message
