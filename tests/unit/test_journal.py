"""The work folder's lock and the journal's fingerprint (no MPI; other processes for real)."""

from __future__ import annotations

import errno
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from h5par.core.layout import OutputOptions
from h5par.core.units import Target
from h5par.engine import journal, lock
from h5par.engine.jobs import job_from_dict
from h5par.engine.journal import fingerprint
from h5par.engine.lock import LOCK, BusyError, holder, take
from h5par.errors import UsageError

HOLD = """
import sys, time
from pathlib import Path
from h5par.engine.lock import take
lock = take(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holding(tmp_path):
    """Start a process that takes the lock of a work folder and keeps it; yields it."""
    folder = tmp_path / ".out.h5.h5par"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield folder, proc
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def record(folder: Path, host: str, pid: int) -> None:
    folder.mkdir(exist_ok=True)
    (folder / LOCK).write_text(json.dumps({"host": host, "pid": pid, "started": "then"}))


def dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return int(done.stdout)


def test_a_lock_held_by_another_process_is_busy_and_names_it(holding) -> None:
    folder, proc = holding
    started = time.monotonic()
    with pytest.raises(BusyError, match="another h5par run is working in") as info:
        take(folder)
    assert time.monotonic() - started < 5  # refused at once, not after a wait
    message = str(info.value)
    assert str(folder) in message and f"pid {proc.pid} on {socket.gethostname()}" in message
    assert isinstance(info.value, UsageError) and "\n" not in message
    owner = holder(folder)
    assert owner is not None and owner.pid == proc.pid


def test_the_lock_of_a_killed_run_on_this_host_is_taken_over(holding) -> None:
    folder, proc = holding
    (folder / "journal.json").write_text("{}")  # the killed run's progress stays
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert json.loads((folder / LOCK).read_text())["pid"] == proc.pid  # its record stays
    assert holder(folder) is None
    with take(folder):
        assert json.loads((folder / LOCK).read_text())["pid"] == os.getpid()
    assert (folder / "journal.json").is_file() and (folder / LOCK).read_text() == ""


def test_a_record_of_a_dead_pid_on_this_host_is_stale(tmp_path) -> None:
    folder = tmp_path / ".o.h5par"
    record(folder, socket.gethostname(), dead_pid())
    assert holder(folder) is None
    take(folder).release()
    assert not folder.exists()  # nothing but the lock was left: the folder goes too


def test_a_record_from_another_host_is_busy_until_its_lock_file_is_deleted(tmp_path) -> None:
    # That host's flock may be invisible here (per-host locks on NFS/Lustre mounts).
    folder = tmp_path / ".o.h5par"
    record(folder, "node-that-is-not-this-one", 4242)
    with pytest.raises(BusyError) as info:
        take(folder)
    message = str(info.value)
    assert "pid 4242 on node-that-is-not-this-one" in message
    assert f"delete {folder / LOCK} and rerun" in message
    assert holder(folder) is not None
    (folder / LOCK).unlink()  # what the README says to do once that run is gone
    take(folder).release()


@pytest.mark.parametrize(
    ("job", "restart", "busy"),
    [("77", "1", False), ("77", "0", True), ("78", "1", True), ("", "0", True)],
    ids=["requeued", "another step of the same run", "another job", "not under SLURM"],
)
def test_a_requeued_slurm_job_takes_over_its_earlier_run_on_a_failed_node(
    tmp_path, monkeypatch, job, restart, busy
) -> None:
    folder = tmp_path / ".o.h5par"
    folder.mkdir()
    (folder / LOCK).write_text(
        json.dumps({"host": "failed-node", "pid": 9, "started": "then", "slurm": "77/0"})
    )
    monkeypatch.setenv("SLURM_JOB_ID", job)
    monkeypatch.setenv("SLURM_RESTART_COUNT", restart)
    if busy:
        with pytest.raises(BusyError, match="pid 9 on failed-node"):
            take(folder)
    else:
        with take(folder):
            assert json.loads((folder / LOCK).read_text())["slurm"] == "77/1"


def test_without_flock_the_owner_record_alone_decides(tmp_path, monkeypatch) -> None:
    # Some NFS/Lustre mounts answer every flock with ENOLCK: a live owner is still busy.
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock.fcntl, "flock", no_locks)
    folder = tmp_path / ".o.h5par"
    record(folder, socket.gethostname(), os.getppid())  # alive
    with pytest.raises(BusyError, match=f"pid {os.getppid()}"):
        take(folder)
    assert holder(folder) is not None
    record(folder, socket.gethostname(), dead_pid())
    assert holder(folder) is None
    with take(folder):
        assert holder(folder) is not None  # now this process, alive
        with pytest.raises(BusyError, match=f"pid {os.getpid()}"):
            take(folder)


def test_a_lock_that_cannot_be_taken_is_an_error(tmp_path) -> None:
    folder = tmp_path / ".o.h5par"
    (folder / LOCK).mkdir(parents=True)  # not a file: it cannot be opened for writing
    with pytest.raises(UsageError, match="cannot lock work folder"):
        take(folder)
    with pytest.raises(UsageError, match="does not exist"):
        take(tmp_path / "missing" / ".o.h5par")


def test_release_keeps_a_work_folder_with_progress_and_clears_the_owner(tmp_path) -> None:
    folder = tmp_path / ".o.h5par"
    lock = take(folder)
    (folder / "journal.json").write_text("{}")
    lock.release()
    lock.release()  # twice is harmless
    assert (folder / LOCK).read_text() == "" and holder(folder) is None


# The fingerprint: explicit values only, the same before and after pickling (N ranks).


def test_fingerprint_of_targets_survives_pickling(tmp_path) -> None:
    # h5py's dtypes print as dtype('<f8') and, once pickled (N ranks), as dtype('float64').
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f["f"], f["i"] = np.ones(3), np.ones(3, ">i4")
        f["c"] = np.zeros(2, [("a", "<f4"), ("b", "u1", (2,))])
        dtypes = [f[name].dtype for name in ("f", "i", "c")]
    targets = [
        Target("/x", (4, 3), dt, (4, 3), dt, (2, 3), {"chunks": (2, 3), "fillvalue": dt.type(0)})
        for dt in dtypes[:2]
    ]
    targets.append(Target("/c", (5,), dtypes[2], (5,), dtypes[2], None, {}))
    parts = {"targets": targets, "options": OutputOptions(chunks=[2, 3]), "budget": 1 << 20}
    assert fingerprint(parts) == fingerprint(pickle.loads(pickle.dumps(parts)))
    assert fingerprint(parts) != fingerprint({**parts, "budget": 1 << 21})


def test_fingerprint_refuses_values_without_an_explicit_form() -> None:
    with pytest.raises(TypeError, match="cannot fingerprint"):
        fingerprint({"x": object()})


def test_fingerprint_of_a_chain_is_its_parameters(tmp_path) -> None:
    (tmp_path / "a.h5").write_bytes(b"")
    kernels = [{"name": "clip", "min": 0.0}, {"name": "astype", "dtype": "float32"}]
    job = job_from_dict(
        {"input": {"path": "a.h5"}, "output": {"in_place": True}, "kernels": kernels}, tmp_path
    )
    from h5par.kernels import Chain

    chain = Chain.from_specs(job.kernels)
    assert fingerprint({"c": chain}) == fingerprint({"c": pickle.loads(pickle.dumps(chain))})
    other = Chain.from_specs([{"name": "clip", "min": 1.0}, kernels[1]])
    assert fingerprint({"c": chain}) != fingerprint({"c": other})


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["link to a scratch folder", "a file"])
def test_a_work_folder_that_is_a_link_or_a_file_is_refused_and_left_alone(tmp_path, kind) -> None:
    # A fresh start empties the work folder: through a link it deleted the other files of
    # the folder linked to (and left its journal and lock there).
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "mine.txt").write_text("precious")
    folder = tmp_path / ".out.h5.h5par"
    if kind == "a file":
        folder.write_text("not a folder")
    else:
        folder.symlink_to(scratch)
    with pytest.raises(UsageError, match=r"work folder .* is (a symbolic link|not a folder)"):
        take(folder)
    assert (scratch / "mine.txt").read_text() == "precious"
    assert sorted(p.name for p in scratch.iterdir()) == ["mine.txt"]


def test_an_in_place_file_reached_through_a_link_has_the_work_folder_of_its_target(
    tmp_path,
) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "snap_3.h5").write_bytes(b"")
    (tmp_path / "latest.h5").symlink_to(tmp_path / "run" / "snap_3.h5")
    link, real = tmp_path / "latest.h5", tmp_path / "run" / "snap_3.h5"
    assert journal.work_folder_of(link, True) == journal.work_folder_of(real, True)
    assert journal.work_folder_of(real, True) == tmp_path / "run" / ".snap_3.h5.h5par"
    # a new output replaces the name itself: its work folder stays beside the name
    assert journal.work_folder_of(link, False) == tmp_path / ".latest.h5.h5par"


@pytest.mark.timeout(60)
def test_status_says_running_while_a_run_holds_the_lock_before_its_journal(tmp_path) -> None:
    # The lock is taken before the output is built (object copies of big datasets can take
    # minutes) and the journal is written after: status said "not started" meanwhile.
    from h5par.app.status import job_status

    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"] = np.ones(8)
    job = job_from_dict(
        {
            "version": 1,
            "input": {"path": str(tmp_path / "data.h5")},
            "output": {"path": str(tmp_path / "out.h5")},
            "kernels": [{"name": "scale", "factor": 2}],
        }
    )
    with take(tmp_path / ".out.h5.h5par"):
        (line,) = job_status(job)
    assert "running: starting" in line and f"pid {os.getpid()} on " in line, line
    (line,) = job_status(job)
    assert line.endswith(": not started"), line


def test_a_work_folder_name_too_long_names_the_work_folder_not_the_output_folder(
    tmp_path,
) -> None:
    # A 253-byte file name is legal; its work folder's (260 bytes) is not: the message said
    # "output folder '.' is not writable (File name too long)".
    folder = journal.work_folder(tmp_path / ("a" * 250 + ".h5"))
    with pytest.raises(UsageError, match=r"work folder .*: name too long .* at most 248 bytes"):
        take(folder)


def test_a_lock_file_that_is_a_symbolic_link_is_refused_and_its_target_kept(tmp_path) -> None:
    # The owner record was written through the link: the file it named was truncated.
    (tmp_path / "precious.txt").write_text("mine")
    folder = tmp_path / ".out.h5.h5par"
    folder.mkdir()
    (folder / LOCK).symlink_to(tmp_path / "precious.txt")
    with pytest.raises(UsageError, match=r"cannot lock work folder"):
        take(folder)
    assert (tmp_path / "precious.txt").read_text() == "mine"


def test_status_gives_one_line_per_file_whatever_its_name_holds(tmp_path) -> None:
    from h5par.app.status import job_status

    for name in ("a\nb.h5", "c\rd.h5"):
        with h5py.File(tmp_path / name, "w") as f:
            f["x"] = np.ones(8)
    job = job_from_dict(
        {
            "version": 1,
            "input": {"path": str(tmp_path / "*.h5")},
            "output": {"path": str(tmp_path / "out" / "{stem}_c.h5")},
            "kernels": [{"name": "scale", "factor": 2}],
        }
    )
    lines = job_status(job)
    assert len("\n".join(lines).splitlines()) == 2, lines
    assert lines[0].endswith("a\\nb_c.h5: not started"), lines


def test_staged_data_is_kept_until_unstaged_and_enum_metadata_gives_no_warning(tmp_path) -> None:
    j = journal.Journal(tmp_path, "f", units={"/x": 4})
    data = np.array([0, 1, 1], dtype=h5py.enum_dtype({"off": 0, "on": 1}, basetype="i1"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        j.stage("/x", 2, data)
    assert not j.is_staged("/x", 2)  # kept, but not recorded as staged yet
    j.mark_staged("/x", [2, 3])
    assert j.is_staged("/x", 2) and not j.is_staged("/x", 3)  # unit 3 kept nothing
    assert j.staged_data("/x", 2).tobytes() == data.tobytes()
    j.finish("/x", [2])
    j.unstage("/x", [2])
    assert j.staged == {"/x": [3]} and not j.redo_file("/x", 2).exists()
    assert j.remaining("/x", 4) == [0, 1, 3]


def test_no_journal_has_every_unit_to_do_and_keeps_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    none = journal.NO_JOURNAL
    assert none.remaining("/x", 3) == [0, 1, 2] and not none.resumable
    none.stage("/x", 0, np.ones(3))
    none.mark_staged("/x", [0])
    none.finish("/x", [0])
    none.checkpoint()
    none.save_partials("/x", none.load_partials("/x", 2))
    assert not none.is_staged("/x", 0) and none.remaining("/x", 3) == [0, 1, 2]
    assert list(tmp_path.iterdir()) == []
    assert "nothing was written" in none.stop_message("SIGTERM")


def test_checkpoints_append_what_changed_and_a_load_replays_them(tmp_path) -> None:
    j = journal.Journal(tmp_path, "f", units={"/x": 6, "/y": 2})
    j.save()
    j.finish("/x", [0, 1])
    j.mark_staged("/y", [0])
    j.keep_range("/y", 1, np.float32(-0.5), np.int64(7))
    j.checkpoint()
    j.finish("/x", [2])
    j.finish("/y", [0])
    j.checkpoint()
    j.finish("/x", [5])  # not checkpointed: lost by a kill, done again on resume
    back = journal.Journal.load(tmp_path)
    assert back is not None
    assert back.done == {"/x": [[0, 3]], "/y": [[0, 1]]} and back.staged == {}
    assert back.ranges == {"/y": [[1, -0.5, 7]]} and back.remaining("/x", 6) == [3, 4, 5]
    back.save()  # folds the log into the state, in a new generation
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.json"]
    assert journal.Journal.load(tmp_path) == back


def test_a_log_line_a_kill_cut_short_is_ignored_and_an_old_log_never_replayed(tmp_path) -> None:
    j = journal.Journal(tmp_path, "f", units={"/x": 9})
    j.save()
    j.finish("/x", [0])
    j.checkpoint()
    log = next(tmp_path.glob("journal-*.log"))
    with log.open("a") as f:
        f.write('{"kind": "finish", "path": "/x", "val')  # the kill came mid-write
    back = journal.Journal.load(tmp_path)
    assert back is not None and back.done == {"/x": [[0, 1]]}
    stale = log.read_text()
    back.save()
    log.write_text(stale + '\n{"kind": "finish", "path": "/x", "value": [[1, 9]]}\n')
    again = journal.Journal.load(tmp_path)  # a crash between the state and the log's removal
    assert again is not None and again.done == {"/x": [[0, 1]]}


def test_a_checkpoint_costs_what_changed_not_what_the_run_holds(tmp_path) -> None:
    paths = [f"/g{i // 50}/v{i % 50}" for i in range(2000)]
    j = journal.Journal(tmp_path, "f", units=dict.fromkeys(paths, 3))
    j.save()
    log = tmp_path / "journal-1.log"
    grown = []
    for path in paths:
        before = log.stat().st_size if log.exists() else 0
        j.finish(path, [0, 1, 2])
        j.checkpoint()
        grown.append(log.stat().st_size - before)
    assert max(grown) == min(grown) + 2  # "/g0/v0" to "/g39/v49": two digits more
    assert len(j.changes) == 0
    back = journal.Journal.load(tmp_path)
    assert back is not None and back.count() == (6000, 6000)


def test_finishing_units_in_order_keeps_one_interval(tmp_path) -> None:
    j = journal.Journal(tmp_path, "f", units={"/x": 100_000})
    for u in range(0, 100_000, 7):
        j.finish("/x", range(u, min(u + 7, 100_000)))
    assert j.done == {"/x": [[0, 100_000]]} and j.remaining("/x", 100_000) == []


def test_a_damaged_line_before_the_last_is_refused_not_skipped(tmp_path) -> None:
    j = journal.Journal(tmp_path, "f", units={"/x": 9})
    j.save()
    for u in range(3):
        j.finish("/x", [u])
        j.checkpoint()
    log = tmp_path / "journal-1.log"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text(lines[0] + lines[1][:20] + "\n" + lines[2])
    with pytest.raises(journal.DamagedJournalError, match="damaged at line 2"):
        journal.Journal.load(tmp_path)
    (tmp_path / "journal.json").write_text('{"version": 1, "fingerp')
    with pytest.raises(journal.DamagedJournalError, match="cannot be read"):
        journal.Journal.load(tmp_path)


def _fsyncs_of_take(folder: Path, monkeypatch) -> int:
    """How many ``fsync`` calls taking (and releasing) the lock of ``folder`` makes."""
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    with take(folder):
        pass
    return len(calls)


def test_the_owner_record_is_fsynced_only_where_other_hosts_may_read_it(tmp_path, monkeypatch):
    if not lock._local(os.stat(tmp_path).st_dev):
        pytest.skip(f"{tmp_path} is not on a file system known to be local")
    assert _fsyncs_of_take(tmp_path / ".a.h5par", monkeypatch) == 0
    monkeypatch.setattr(lock, "LOCAL_FILE_SYSTEMS", frozenset())  # as if on NFS
    assert _fsyncs_of_take(tmp_path / ".b.h5par", monkeypatch) == 1


def test_mount_types_reads_mountinfo_and_refuses_what_it_cannot_tell() -> None:
    text = "\n".join(
        [
            "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw",
            "30 22 0:40 / /scratch rw shared:9 - lustre 10.0.0.1@tcp:/fs rw",
            "31 22 0:41 / /a rw - nfs srv:/a rw",
            "32 22 0:41 / /b rw - xfs /dev/x rw",  # one device, two types: neither
            "garbage",
            "33 22 x:y / /c rw - ext4 /dev/y rw",
        ]
    )
    assert lock.mount_types(text) == {(254, 1): "ext4", (0, 40): "lustre", (0, 41): ""}


def _fsyncs_of_save(folder: Path, monkeypatch, durable: bool) -> int:
    """How many ``fsync`` calls one :meth:`Journal.save` makes."""
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    journal.Journal(folder, "f", units={"/x": 2}).save(durable=durable)
    return len(calls)


def test_only_an_in_place_journal_is_synced_when_saved(tmp_path, monkeypatch) -> None:
    """A new output's journal is not synced (its output is not either); in place, both."""
    assert _fsyncs_of_save(tmp_path, monkeypatch, durable=False) == 0
    assert journal.Journal.load(tmp_path).units == {"/x": 2}
    assert _fsyncs_of_save(tmp_path, monkeypatch, durable=True) == 2  # the state, the rename
