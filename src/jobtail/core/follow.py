"""Waking the followers of task logs when a log grows or its job changes, without polling per follower.

One `Notifier` per LogStore, so per process (`LogStore.follow` registers with it). Followers
register with `follow()` and are woken by calling the `wake` callable they gave, after the
notifier has updated what it knows (`Follower.end`, `.phase`, `.deleted`). A wake-up means "look
again", never "exactly this changed": a follower re-reads the log's state after every wake-up,
so spurious or merged wake-ups are harmless.

News arrives two ways:

- Appends made in this process: `LogStore.append` calls `appended(log_id, end)` right after
  the append is stored, so followers wake at once.
- Everything else (appends through other processes or replicas, job phase changes, deletions):
  ONE poller thread per process reads the end offsets of all followed logs and the phases of
  their jobs in two queries every `interval` seconds (`LogHeads.log_ends`,
  `JobRecords.job_phases`) and wakes the followers whose log or job changed. A log or job that
  no longer exists marks its followers `deleted`. The thread runs only while someone follows.

Like litestream's `DB.Notify()`, the signal is level-triggered: a follower that was busy when
woken finds its flag still raised when it next waits. `AsyncWake` is such a flag for an asyncio
task; any thread (and a signal handler) may raise it, through `loop.call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from jobtail.core.job_records import JobRecords
from jobtail.core.log_records import LogHeads

log = logging.getLogger("jobtail.follow")

POLL_INTERVAL = 0.25  # seconds between looks at the database for news from other processes


class Follower:
    """One follower of one task log, as the notifier sees it.

    `end`: the newest end offset the notifier saw (informational: followers re-read the log's
    state); `phase`: the job's newest phase seen; `deleted`: the job or its log is gone. The
    notifier updates these before calling `wake`.
    """

    __slots__ = ("deleted", "end", "job_id", "log_id", "phase", "wake")

    def __init__(self, log_id: int, job_id: str, end: int, phase: str, wake: Callable[[], None]) -> None:
        self.log_id = log_id
        self.job_id = job_id
        self.end = end
        self.phase = phase
        self.deleted = False
        self.wake = wake


class Notifier:
    """Per-process wake-ups for followers of task logs (see the module docstring). Thread-safe.

    `appended` and `wake_all` take no lock (followers are kept in immutable tuples replaced on
    change), so they are cheap on the append path and safe to call from a signal handler.
    """

    def __init__(self, heads: LogHeads, jobs: JobRecords, interval: float = POLL_INTERVAL) -> None:
        self._heads = heads
        self._jobs = jobs
        self._interval = interval
        self._lock = threading.Lock()
        self._by_log: dict[int, tuple[Follower, ...]] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._failing = False  # log a failing database once, not four times a second

    def follow(self, log_id: int, job_id: str, *, end: int, phase: str, wake: Callable[[], None]) -> Follower:
        """Register a follower of task log `log_id` (of job `job_id`), whose log was seen to end
        at `end` and whose job was seen in `phase`. Pair with `unfollow`."""
        follower = Follower(log_id, job_id, end, phase, wake)
        with self._lock:
            self._by_log[log_id] = (*self._by_log.get(log_id, ()), follower)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="jobtail-follow-poller", daemon=True)
                self._thread.start()
        return follower

    def unfollow(self, follower: Follower) -> None:
        with self._lock:
            rest = tuple(f for f in self._by_log.get(follower.log_id, ()) if f is not follower)
            if rest:
                self._by_log[follower.log_id] = rest
            else:
                self._by_log.pop(follower.log_id, None)

    def following(self) -> int:
        """Number of registered followers."""
        return sum(len(fs) for fs in tuple(self._by_log.values()))

    def appended(self, log_id: int, end_offset: int) -> None:
        """An append stored in this process made log `log_id` end at `end_offset`: wake its followers."""
        for follower in self._by_log.get(log_id, ()):
            if end_offset > follower.end:
                follower.end = end_offset
            follower.wake()

    def wake_all(self) -> None:
        """Wake every follower (e.g. the server is shutting down)."""
        for followers in tuple(self._by_log.values()):
            for follower in followers:
                follower.wake()

    def poll(self) -> None:
        """Look once at the database for news of every followed log and wake whom it concerns."""
        by_log = dict(self._by_log)
        if not by_log:
            return
        ends = self._heads.log_ends(list(by_log))
        phases = self._jobs.job_phases(sorted({f.job_id for fs in by_log.values() for f in fs}))
        for log_id, followers in by_log.items():
            end = ends.get(log_id)
            for follower in followers:
                phase = phases.get(follower.job_id)
                changed = False
                if end is None or phase is None:
                    changed, follower.deleted = not follower.deleted, True
                else:
                    if end > follower.end:
                        follower.end, changed = end, True
                    if phase != follower.phase:
                        follower.phase, changed = phase, True
                if changed:
                    follower.wake()

    def close(self) -> None:
        """Stop the poller thread (waiting for it); in-process wake-ups keep working. Idempotent."""
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                if not self._by_log:  # nobody follows: stop; the next follow() starts a new thread
                    if self._thread is threading.current_thread():
                        self._thread = None
                    return
            try:
                self.poll()
            except Exception:  # keep polling: the database may come back
                if not self._failing:
                    log.exception("follow poller failed; retrying every %.2f s", self._interval)
                self._failing = True
            else:
                if self._failing:
                    log.warning("follow poller recovered")
                self._failing = False


class AsyncWake:
    """A level-triggered wake-up flag for one asyncio task; any thread may raise it by calling it.

    Raising it schedules at most one callback on the loop at a time, however often appends come.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._scheduled = False

    def __call__(self) -> None:
        # No lock: this may run in a signal handler. A lost race only schedules one more callback.
        if self._scheduled:
            return
        self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._fire)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _fire(self) -> None:
        self._scheduled = False
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """Wait until raised (True, and lower the flag) or `timeout` seconds pass (False)."""
        if not self._event.is_set():
            try:
                await asyncio.wait_for(self._event.wait(), max(timeout, 0.0))
            except TimeoutError:
                return False
        self._event.clear()
        return True
