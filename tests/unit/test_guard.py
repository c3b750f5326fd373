"""The watchdog's decisions when a failed rank has posted a notice (no MPI involved)."""

from __future__ import annotations

import time

import pytest

from h5par.parallel import guard

NOTICE = (1, ("boom [writing /x, rank 1 of 2 on host]", 3))


class GaveUpError(Exception):
    pass


@pytest.fixture
def watchdog(monkeypatch):
    """The watchdog's helpers with notices, releases and give_up recorded."""
    posted: list[tuple[int, tuple[str, int]]] = []
    released: list[int] = []

    def give_up(message: str) -> None:
        raise GaveUpError(message)

    monkeypatch.setattr(guard, "_notices", lambda comm=None: list(posted))
    monkeypatch.setattr(guard, "release", lambda comm, dest, reason: released.append(dest))
    monkeypatch.setattr(guard, "release_noticed", lambda reason: released.append(reason))
    monkeypatch.setattr(guard, "give_up", give_up)
    monkeypatch.setattr(guard, "key", id)
    monkeypatch.setattr(guard, "_state", guard._State(seconds=4.0, where="rank 0 of 2 on h"))
    return posted, released


def test_without_a_notice_a_stuck_rank_names_itself(watchdog) -> None:
    with pytest.raises(GaveUpError, match="rank 0 of 2 on h made no progress for 5 s"):
        guard._stuck(4.0, 5.0)


def test_with_a_notice_a_stuck_rank_leaves_the_word_to_the_failed_rank(watchdog) -> None:
    posted, released = watchdog
    posted.append(NOTICE)
    guard._stuck(4.0, 5.0)  # silent: it tells the failed rank to end the job, saying why
    guard._stuck(4.0, 6.0)
    assert released == ["rank 0 of 2 on h made no progress for 5 s (starting)"]
    guard._state.noticed = time.monotonic() - guard.FAILED_PATIENCE - guard._GRACE - 1
    with pytest.raises(GaveUpError, match=r"^boom \[writing /x, rank 1 of 2 on host\]; that rank"):
        guard._stuck(4.0, 30.0)


def test_a_rank_inside_a_collective_call_the_failed_rank_left_releases_it(watchdog) -> None:
    posted, released = watchdog
    comm = object()
    for _ in range(3):
        with guard.collective_call(comm):
            pass
    posted.append(NOTICE)  # the failed rank had entered 3 collective calls
    with guard.collective_call(comm):  # the 4th: it never comes
        assert guard._state.inside == (comm, 4)
        guard._release_if_left(comm, 4)
    assert released == [1] and guard._state.released
    assert guard._state.inside is None and guard.calls(comm) == 4


def test_a_rank_inside_a_call_the_failed_rank_made_too_waits(watchdog) -> None:
    posted, released = watchdog
    posted.append(NOTICE)  # it failed after the 3rd call: this rank will leave it
    guard._release_if_left(object(), 3)
    assert released == [] and not guard._state.released
