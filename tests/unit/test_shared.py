"""What a host that does not see the job's files as rank 0 does is told (h5par.engine.shared).

The whole check runs on two simulated hosts in tests/cluster; here its pure parts.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from h5par.engine import shared
from h5par.errors import UsageError
from h5par.parallel.comm import ONE_PROCESS


def test_one_host_checks_nothing_and_leaves_no_probe(tmp_path) -> None:
    (tmp_path / "in.h5").write_bytes(b"x")
    shared.check_shared([tmp_path / "in.h5", tmp_path / "gone.h5"], [tmp_path], ONE_PROCESS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5"]


def test_a_probe_goes_into_the_nearest_existing_folder(tmp_path) -> None:
    folder, made = shared._probe(tmp_path / "out" / "deeper")
    assert folder == str(tmp_path / "out" / "deeper") and Path(made).parent == tmp_path
    assert Path(made).name.startswith(".h5par-shared-") and Path(made).stat().st_size == 0


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
    made = shared._probe(tmp_path / "out")
    shared._compare_outputs([made, None], "n1")
    os.unlink(made[1])
    with pytest.raises(
        UsageError,
        match=f"output folder '{tmp_path / 'out'}' is not shared by every host: a file n1 made in '{tmp_path}' is missing here",
    ):
        shared._compare_outputs([made], "n1")
