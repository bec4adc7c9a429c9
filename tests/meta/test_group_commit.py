"""GroupCommit: one transaction for the commits threads wait for at the same moment."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from jobtail.meta.group_commit import GroupCommit

DEADLINE = 30.0  # seconds: only catches a hang


class Recorder:
    """A `commit_all` that records its batches; the first one blocks until `release` is set."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.started.set()
            assert self.release.wait(DEADLINE)
        if self.fail_on in items:
            raise OSError("disk full")
        return [item * 10 for item in items]


def queued(group: GroupCommit[int, int], count: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while len(group._queue) < count:  # waiting behind the commit under way
        assert time.monotonic() < deadline, "the waiters never queued"
        time.sleep(0.001)


def run(group: GroupCommit[int, int], item: int, results: dict[int, object]) -> threading.Thread:
    def submit() -> None:
        try:
            results[item] = group.submit(item)
        except OSError as exc:
            results[item] = exc

    thread = threading.Thread(target=submit)
    thread.start()
    return thread


def test_a_lone_commit_is_made_at_once_with_its_own_result() -> None:
    recorder = Recorder()
    recorder.release.set()
    group = GroupCommit(recorder)
    assert group.submit(4) == 40
    assert group.submit(5) == 50
    assert recorder.batches == [[4], [5]]


def test_commits_waiting_behind_one_under_way_share_the_next_transaction() -> None:
    recorder = Recorder()
    group = GroupCommit(recorder)
    results: dict[int, object] = {}
    threads = [run(group, 1, results)]
    assert recorder.started.wait(DEADLINE)
    threads += [run(group, item, results) for item in (2, 3, 4)]
    queued(group, 3)
    recorder.release.set()
    for thread in threads:
        thread.join(DEADLINE)
    assert results == {1: 10, 2: 20, 3: 30, 4: 40}
    assert recorder.batches[0] == [1]
    assert sorted(recorder.batches[1]) == [2, 3, 4] and len(recorder.batches) == 2


def test_a_failed_transaction_fails_every_commit_in_it_and_the_next_ones_go_on() -> None:
    recorder = Recorder(fail_on=3)
    group = GroupCommit(recorder)
    results: dict[int, object] = {}
    threads = [run(group, 1, results)]
    assert recorder.started.wait(DEADLINE)
    threads += [run(group, item, results) for item in (2, 3)]
    queued(group, 2)
    recorder.release.set()
    for thread in threads:
        thread.join(DEADLINE)
    assert results[1] == 10
    assert isinstance(results[2], OSError) and isinstance(results[3], OSError), "none of that batch was committed"
    assert group.submit(5) == 50
    with pytest.raises(OSError):
        group.submit(3)
