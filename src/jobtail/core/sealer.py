"""Seals that appends make due, run by the engine itself off the appenders' threads.

An append that takes a head to `seal_bytes` schedules its log here (`Sealer.schedule`, a set
insertion when it is already scheduled); at most `WORKERS` threads seal, each log at most once
at a time. A full or unwritable segment store is left to maintenance, which retries every round
and reports it once; anything else is reported through the same `FailureLog`, once per kind.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from jobtail.core.errors import StorageFull, StorageNotWritable
from jobtail.core.maintenance import FailureLog

WORKERS = 4  # seals of different logs in parallel (PostgreSQL and S3 gain; SQLite serialises anyway)


class Sealer:
    """Runs `seal(log_id)` in the background for every scheduled log; `close()` waits for the
    seals under way and drops those not started (their heads stay durable; maintenance seals them)."""

    def __init__(self, seal: Callable[[int], object], failures: FailureLog) -> None:
        self._seal = seal
        self._failures = failures
        self._lock = threading.Lock()
        self._scheduled: set[int] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False

    def schedule(self, log_id: int) -> None:
        with self._lock:
            if self._closed or log_id in self._scheduled:
                return
            self._scheduled.add(log_id)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="jobtail-sealer")
            self._pool.submit(self._run, log_id)

    def _run(self, log_id: int) -> None:
        with self._lock:
            self._scheduled.discard(log_id)
        try:
            self._seal(log_id)
        except (StorageFull, StorageNotWritable):
            pass  # maintenance retries it every round and reports it once
        except Exception as exc:
            self._failures.failed("sealing a full head", exc)
        else:
            self._failures.succeeded("sealing a full head")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
