"""The follow Notifier: in-process appends wake at once, other processes' appends through one poller."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from support.engine import backends_of, jobs_of, new_job

from jobtail.core.follow import AsyncWake, Notifier
from jobtail.core.jobs import COMPLETED, RUNNING
from jobtail.core.store import Backends, LogStore
from jobtail.core.types import TaskRef

POLLER = "jobtail-follow-poller"


def pollers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == POLLER]


@pytest.fixture(autouse=True)
def no_poller_left() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 5
    while pollers() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not pollers(), "a follow poller thread outlived its test"


class Counting:
    """The log heads and job records a notifier asks, counting the poller's queries."""

    def __init__(self, backends: Backends) -> None:
        self._backends = backends
        self.log_ends_calls: list[list[int]] = []
        self.job_phases_calls = 0

    def log_ends(self, log_ids: list[int]) -> dict[int, int]:
        self.log_ends_calls.append(sorted(log_ids))
        return self._backends.logs.log_ends(log_ids)

    def job_phases(self, job_ids: list[str]) -> dict[str, str]:
        self.job_phases_calls += 1
        return self._backends.jobs.job_phases(job_ids)


def notifier_of(store: LogStore, interval: float) -> Notifier:
    """A notifier of its own on the store's database (as another process would have)."""
    backends = backends_of(store)
    return Notifier(backends.logs, backends.jobs, interval)


def new_task(store: LogStore, name: str = "follow", nodes: int = 1) -> tuple[str, list[TaskRef], list[int]]:
    job = new_job(store, "proj", name, node_count=nodes)
    refs = [TaskRef("proj", job.id, t) for t in job.tasks]
    return job.id, refs, [store.state(r).log_id for r in refs]


def test_in_process_append_wakes_its_followers_at_once(store_factory: Callable[..., LogStore]) -> None:
    store = store_factory(follow_poll_seconds=60)  # the poller would take a minute: only the hook can wake
    job_id, (ref, other), _ = new_task(store, nodes=2)
    woken, bystander = threading.Event(), threading.Event()
    follower = store.follow(store.state(ref), job_id, RUNNING, woken.set)
    store.follow(store.state(other), job_id, RUNNING, bystander.set)
    store.append(ref, b"hello\n")
    assert woken.wait(0.5) and follower.end == 6
    assert not bystander.is_set()
    woken.clear()
    store.append(ref, b"hello\n", offset=0)  # a duplicate stores nothing: no news
    assert not woken.wait(0.1)
    store.unfollow(follower)
    store.append(ref, b"more\n")
    assert not woken.wait(0.1) and follower.end == 6


def test_poller_catches_appends_of_another_process_quickly(store_factory: Callable[..., LogStore]) -> None:
    ours, theirs = store_factory(), store_factory()  # two LogStores on one database: two "processes"
    counting = Counting(backends_of(ours))
    notifier = Notifier(counting, counting, interval=0.25)  # type: ignore[arg-type]
    try:
        job_id, (ref,), (log_id,) = new_task(ours)
        woken = threading.Event()
        follower = notifier.follow(log_id, job_id, end=0, phase=RUNNING, wake=woken.set)
        time.sleep(0.3)
        assert not woken.is_set()
        for size in (10, 25):
            woken.clear()
            appended_at = time.monotonic()
            theirs.append(ref, b"x" * (size - follower.end))
            assert woken.wait(2), "the poller never noticed the other process's append"
            assert time.monotonic() - appended_at < 0.9, "the poller looks four times a second"
            assert follower.end == size
    finally:
        notifier.close()
    assert counting.log_ends_calls and all(ids == [log_id] for ids in counting.log_ends_calls)


def test_one_query_per_tick_for_all_followers(store: LogStore) -> None:
    counting = Counting(backends_of(store))
    notifier = Notifier(counting, counting, interval=0.05)  # type: ignore[arg-type]
    try:
        job_id, _, log_ids = new_task(store, nodes=10)
        for log_id in log_ids:
            for _ in range(5):
                notifier.follow(log_id, job_id, end=0, phase=RUNNING, wake=lambda: None)
        time.sleep(0.5)
    finally:
        notifier.close()
    calls = counting.log_ends_calls
    assert 3 <= len(calls) <= 12, "fifty followers must cost one query per tick, not one each"
    assert all(ids == sorted(log_ids) for ids in calls)
    assert counting.job_phases_calls == len(calls)


def test_poller_reports_phase_changes_and_deletion(store: LogStore) -> None:
    jobs = jobs_of(store)
    notifier = notifier_of(store, interval=0.05)
    try:
        job_id, _, (log_id,) = new_task(store)
        running = jobs.transition(jobs_of(store).get("proj", job_id), RUNNING)
        assert running is not None
        woken = threading.Event()
        follower = notifier.follow(log_id, job_id, end=0, phase=RUNNING, wake=woken.set)
        time.sleep(0.2)
        assert not woken.is_set()
        assert jobs.transition(running, COMPLETED) is not None
        assert woken.wait(2) and follower.phase == COMPLETED and not follower.deleted
        woken.clear()
        jobs.delete("proj", job_id)
        assert woken.wait(2) and follower.deleted
        woken.clear()
        assert not woken.wait(0.2), "a deleted log is reported once"
    finally:
        notifier.close()


def test_poller_runs_only_while_someone_follows(store: LogStore) -> None:
    notifier = notifier_of(store, interval=0.02)
    try:
        job_id, _, (log_id,) = new_task(store)
        assert not pollers()
        first = notifier.follow(log_id, job_id, end=0, phase=RUNNING, wake=lambda: None)
        assert len(pollers()) == 1
        second = notifier.follow(log_id, job_id, end=0, phase=RUNNING, wake=lambda: None)
        assert len(pollers()) == 1
        notifier.unfollow(first)
        notifier.unfollow(second)
        assert notifier.following() == 0
        deadline = time.monotonic() + 2
        while pollers() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not pollers()
        notifier.follow(log_id, job_id, end=0, phase=RUNNING, wake=lambda: None)
        assert len(pollers()) == 1
    finally:
        notifier.close()
    assert not pollers()


def test_poller_survives_a_failing_database(store: LogStore, caplog: pytest.LogCaptureFixture) -> None:
    class Flaky(Counting):
        fail = True

        def log_ends(self, log_ids: list[int]) -> dict[int, int]:
            if self.fail:
                raise ConnectionError("database away")
            return super().log_ends(log_ids)

    flaky = Flaky(backends_of(store))
    notifier = Notifier(flaky, flaky, interval=0.02)  # type: ignore[arg-type]
    try:
        job_id, (ref,), (log_id,) = new_task(store)
        woken = threading.Event()
        notifier.follow(log_id, job_id, end=0, phase=RUNNING, wake=woken.set)
        store.append(ref, b"abc")  # another notifier than the store's: only the poller can tell
        time.sleep(0.2)
        assert not woken.is_set()
        assert sum("follow poller failed" in r.message for r in caplog.records) == 1, "logged once, not per tick"
        flaky.fail = False
        assert woken.wait(2)
    finally:
        notifier.close()


def test_wake_all(store: LogStore) -> None:
    notifier = notifier_of(store, interval=60)
    try:
        job_id, _, log_ids = new_task(store, nodes=3)
        events = [threading.Event() for _ in log_ids]
        for log_id, event in zip(log_ids, events, strict=True):
            notifier.follow(log_id, job_id, end=0, phase=RUNNING, wake=event.set)
        notifier.wake_all()
        assert all(e.is_set() for e in events)
    finally:
        notifier.close()


def test_async_wake_is_level_triggered_and_thread_safe() -> None:
    async def main() -> None:
        wake = AsyncWake()
        assert not await wake.wait(0.01)
        wake()  # raised before anyone waits: the next wait returns at once
        wake()
        assert await wake.wait(10)
        assert not await wake.wait(0.01), "one raise, however often called before the wait, is consumed once"
        started = time.monotonic()
        threading.Timer(0.05, wake).start()
        assert await wake.wait(5)
        assert time.monotonic() - started < 1

    asyncio.run(main())


def test_offset_at_time_starts_at_the_line_that_arrived_then(store_factory: Callable[..., LogStore]) -> None:
    now = [1000.0]
    store = store_factory(clock=lambda: now[0])
    _, (ref,), _ = new_task(store)
    store.append(ref, b"old line one\nold line two\nhalf a ")
    now[0] = 2000.0
    store.append(ref, "line, finished later\nnew line ✓\n".encode())
    now[0] = 3000.0
    store.append(ref, b"newest\n")
    log_start = len(b"old line one\nold line two\n")
    assert store.offset_at_time(store.state(ref), 0) == 0
    assert store.offset_at_time(store.state(ref), 1000.0) == 0
    assert store.offset_at_time(store.state(ref), 1500.0) == log_start  # the line that was finished at 2000 began earlier
    assert store.offset_at_time(store.state(ref), 2500.0) == store.state(ref).end_offset - len(b"newest\n")
    assert store.offset_at_time(store.state(ref), 3500.0) == store.state(ref).end_offset
