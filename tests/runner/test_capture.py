"""The capture's pacing of appends (`Pacer`), and a real capture of a pipe into a real store."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import pytest

from jobtail.core.jobs import JobService
from jobtail.core.store import Appended, LogStore
from jobtail.core.types import JobSpec, TaskRef
from jobtail.runner.capture import FULL_RATE, MAX_GAP_SECONDS, Pacer, TaskCapture
from jobtail.runner.leases import Fence

PROJECT = "0123456789abcdef0123456789abcdef"


def simulate(rate: float, seconds: float) -> tuple[int, float]:
    """A task writing `rate` times a second for `seconds`, read and appended as `_copy` does, on a
    simulated clock: (appends, the longest a write waited for its append)."""
    pacer, appends, waited = Pacer(), 0, 0.0
    pending: list[float] = []  # when the buffered writes arrived
    step, now, next_write = 0.0005, 0.0, 0.0
    while now < seconds:
        if now >= next_write:
            pacer.arrived(now)
            pending.append(now)
            next_write += 1 / rate
        if pending and now >= pacer.due(now):
            waited = max(waited, now - pending[0])
            appends += 1
            pacer.appended(now)
            pending.clear()
        now += step
    return appends, waited


def test_a_quiet_task_is_appended_at_once() -> None:
    pacer = Pacer()
    assert pacer.due(100.0) <= 100.0, "the first output goes out at once"
    pacer.arrived(100.0)
    pacer.appended(100.0)
    pacer.arrived(101.0)
    assert pacer.due(101.0) <= 101.0, "a line a second goes out at once"
    for rate in (1, 5, 10, 20):
        appends, waited = simulate(rate, 5.0)
        assert appends >= rate * 5 - 1, f"{rate} lines/s: every line is its own append"
        assert waited <= 0.001, f"{rate} lines/s: no line waits"


def test_a_busy_task_is_batched_more_the_faster_it_writes() -> None:
    top = (FULL_RATE / MAX_GAP_SECONDS) ** 0.5
    gaps = []
    for rate in (50, 100, 200, 1000, 5000):
        appends, waited = simulate(rate, 5.0)
        per_second = appends / 5.0
        assert per_second <= top + 1, f"{rate} writes/s: never more than ~{top:.0f} appends/s"
        assert waited <= MAX_GAP_SECONDS + 0.001, "no write waits longer than the longest gap"
        gaps.append(rate / per_second)  # writes per append: the batch
    assert gaps == sorted(gaps), "the batch grows with the rate"
    appends, _ = simulate(5000, 5.0)
    assert appends / 5.0 <= 1 / MAX_GAP_SECONDS + 1, "at full rate: the appends of a fixed 100 ms window, no more"


def test_the_rate_estimate_forgets_a_burst() -> None:
    pacer = Pacer()
    for i in range(1000):
        pacer.arrived(i / 1000)
    assert pacer.gap(1.0) == pytest.approx(MAX_GAP_SECONDS)
    pacer.appended(1.0)
    pacer.arrived(6.0)  # five seconds of silence, then a line
    assert pacer.due(6.0) <= 6.0


@pytest.mark.parametrize("meta_url", ["sqlite"], indirect=True)
def test_a_capture_stores_a_busy_pipe_in_order_in_few_appends(
        jobs: JobService, store: LogStore, monkeypatch: pytest.MonkeyPatch) -> None:
    job = jobs.create(PROJECT, JobSpec("capture", node_count=1), "none")
    ref = TaskRef(PROJECT, job.id, "worker-0")
    sizes: list[int] = []
    append: Callable[..., Appended] = store.append

    def counted(ref: TaskRef, data: bytes, offset: int, **options: object) -> Appended:
        sizes.append(len(data))
        return append(ref, data, offset, **options)

    monkeypatch.setattr(store, "append", counted)
    capture = TaskCapture(store, ref)
    capture.start()
    lines = [f"step {i} loss {1 / (i + 1):.6f}\n".encode() for i in range(1500)]

    def task() -> None:  # 1,500 writes over ~1.5 s, then a pause and one last line
        started = time.monotonic()
        for i, line in enumerate(lines):  # on a schedule: a slow sleep must not lower the rate
            os.write(capture.write_fd, line)
            time.sleep(max(0.0, started + (i + 1) / 1000 - time.monotonic()))
        time.sleep(1.5)
        os.write(capture.write_fd, b"last\n")
        capture.close_write_end()

    writer = threading.Thread(target=task)
    writer.start()
    writer.join(30)
    capture.finish(b"exit\n")
    assert capture.done.wait(30)
    state = store.state(ref)
    assert b"".join(store.read(state, 0, state.end_offset)) == b"".join(lines) + b"last\nexit\n"
    assert len(sizes) < 100, f"{len(sizes)} appends for 1,500 writes: batched"
    assert sizes[-2:] == [len(b"last\n"), len(b"exit\n")], "after the pause, the lone line went out alone"


def test_a_capture_that_lost_its_lease_mid_append_does_not_write_after_the_new_owner(
        jobs: JobService, store: LogStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fence said yes, then this process stood still (SIGSTOP) while a peer took the job over
    and wrote its line: the append's offset conflict must not be 'continue after them'."""
    job = jobs.create(PROJECT, JobSpec("taken", node_count=1), "none")
    ref = TaskRef(PROJECT, job.id, "worker-0")
    fence = Fence(3600.0)
    append: Callable[..., Appended] = store.append
    taken = [False]

    def taken_over_first(ref: TaskRef, data: bytes, offset: int, **options: object) -> Appended:
        if not taken[0]:  # between the capture's fence check and its append
            taken[0] = True
            append(ref, b"taken over by another replica\n", 0)
            fence.lose()
        return append(ref, data, offset, **options)

    monkeypatch.setattr(store, "append", taken_over_first)
    capture = TaskCapture(store, ref, fence)
    capture.start()
    os.write(capture.write_fd, b"tick 6\n")
    capture.close_write_end()
    capture.finish(b"exit\n")
    assert capture.done.wait(30)
    state = store.state(ref)
    assert b"".join(store.read(state, 0, state.end_offset)) == b"taken over by another replica\n"
