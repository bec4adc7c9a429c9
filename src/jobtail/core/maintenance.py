"""The engine's background work: sealing idle heads, retention, sweeping what dead sealers left.

One daemon thread per opened engine (`Maintenance`, started by `LogStore.start`). Every `MAINTENANCE_INTERVAL` it seals the
heads that are idle or large enough (and checkpoints SQLite's WAL); retention runs every
`RETENTION_ROUNDS`, from the first; orphan blobs and leftovers of interrupted seals are swept at
start and then every `orphan_grace_seconds`, clamped to one round … `RETENTION_ROUNDS`.

Work that fails is retried by the next round; `FailureLog` reports it without flooding the log:
a full disk fails every round, and a traceback every 2 s helps nobody.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from jobtail.core.errors import JobtailError
from jobtail.core.retention import Expired

log = logging.getLogger("jobtail")

MAINTENANCE_INTERVAL = 2.0  # seconds between looks for idle heads to seal
RETENTION_ROUNDS = 150  # retention runs every this many maintenance rounds (5 minutes), from the first
FIRST_REPORT_AGAIN = 60.0  # seconds until a failure that persists is reported again; doubles each time
LAST_REPORT_AGAIN = 3600.0


@dataclass
class _Failing:
    kind: tuple[str, str]
    since: float
    count: int
    report_at: float
    backoff: float


class FailureLog:
    """Reports the failures of work that is retried, once per kind rather than once per try.

    The first failure of a kind (the exception's class, and for a full log store where) is one
    line; an unexpected exception also gets its traceback, that once. While the work keeps
    failing the same way, one line with the count after 1 minute, then 2, 4, … (at most hourly);
    when it succeeds again, one line saying so.
    """

    def __init__(self, logger: logging.Logger = log, clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._clock = clock
        self._failing: dict[str, _Failing] = {}
        self._lock = threading.Lock()

    def run(self, work: str, action: Callable[[], object]) -> None:
        """Run `action`, reporting its failure as `work` failing; never raises an Exception."""
        try:
            action()
        except Exception as exc:
            self.failed(work, exc)
        else:
            self.succeeded(work)

    def failed(self, work: str, exc: Exception) -> None:
        kind = (type(exc).__name__, getattr(exc, "where", ""))
        message = exc.message if isinstance(exc, JobtailError) else f"{type(exc).__name__}: {exc}"
        now = self._clock()
        with self._lock:
            failing = self._failing.get(work)
            if failing is None or failing.kind != kind:
                self._failing[work] = _Failing(kind, now, 1, now + FIRST_REPORT_AGAIN, FIRST_REPORT_AGAIN)
                first = True
            else:
                failing.count += 1
                first = False
                if now < failing.report_at:
                    return
                failing.backoff = min(failing.backoff * 2, LAST_REPORT_AGAIN)
                failing.report_at = now + failing.backoff
                count, since = failing.count, failing.since
        if first:
            expected = isinstance(exc, JobtailError)
            self._log.log(logging.WARNING if expected else logging.ERROR, "%s failed: %s (retrying)", work, message,
                          exc_info=None if expected else exc)
        else:
            self._log.warning("%s still failing: %d times in %.0f s: %s", work, count, now - since, message)

    def succeeded(self, work: str) -> None:
        with self._lock:
            failing = self._failing.pop(work, None)
        if failing is not None:
            self._log.info("%s works again, after %d failure(s)", work, failing.count)


@dataclass(frozen=True, slots=True)
class MaintenancePolicy:
    """When maintenance acts: seal heads idle this long; drop segments older than
    `retention_seconds` (0 keeps everything); sweep unrecorded blobs older than `orphan_grace_seconds`."""

    seal_idle_seconds: float = 30.0
    retention_seconds: float = 30 * 86_400.0
    orphan_grace_seconds: float = 3600.0


class Maintained(Protocol):
    """What maintenance works on (the `LogStore`)."""

    def seal_idle_heads(self, idle_seconds: float) -> int: ...

    def apply_retention(self, max_age_seconds: float, *, dry_run: bool = False) -> list[Expired]: ...

    def sweep_orphans(self, grace_seconds: float) -> list[str]: ...


class Maintenance:
    """The background thread of the module docstring."""

    def __init__(self, store: Maintained, policy: MaintenancePolicy, failures: FailureLog) -> None:
        self._store = store
        self._policy = policy
        self._failures = failures
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobtail-maintenance", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        grace = self._policy.orphan_grace_seconds
        sweep_rounds = max(1, min(RETENTION_ROUNDS, int(grace // MAINTENANCE_INTERVAL)))
        self._failures.run("sweeping orphan blobs", self._sweep)
        rounds = 0
        while not self._stop.wait(MAINTENANCE_INTERVAL):
            self._failures.run("sealing idle heads", lambda: self._store.seal_idle_heads(self._policy.seal_idle_seconds))
            if rounds % RETENTION_ROUNDS == 0:
                self._failures.run("retention", self._retention)
            rounds += 1
            if rounds % sweep_rounds == 0:
                self._failures.run("sweeping orphan blobs", self._sweep)

    def _sweep(self) -> None:
        removed = self._store.sweep_orphans(self._policy.orphan_grace_seconds)
        if removed:
            log.info("swept %d orphan blob(s) and leftover(s) of interrupted seals", len(removed))

    def _retention(self) -> None:
        for expired in self._store.apply_retention(self._policy.retention_seconds):
            log.info("retention dropped %d segment(s), %d bytes, of %s/%s; it now starts at %d",
                     expired.segments, expired.bytes, expired.job_id, expired.task_id, expired.start_offset)
