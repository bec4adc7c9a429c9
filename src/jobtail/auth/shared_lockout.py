"""The lockout of `jobtail.auth.lockout`, counted in PostgreSQL for replicas sharing the database.

Five failures in a row for one (key, client address) lock it out on every replica, whichever
replicas the attempts reached, and a restart keeps the lock. The request path stays in memory:

- `locked()` reads a mirror of the table's counted rows (a dict lookup, as without sharing);
- `succeeded()` costs a dict lookup unless the pair has failures counted (then it queues a reset);
- `failed()` counts in the mirror at once and queues the database write.

A writer thread applies the queue in `auth_failures` (one transaction per failure, the row locked
`FOR UPDATE`, so concurrent failures on several replicas all count) and announces each new state
with `NOTIFY jobtail_lockout`; a listener thread in every process applies the announcements to its
mirror, and reloads every counted row whenever it (re)connects. A lock therefore reaches the other
replicas within milliseconds of the failure that set it; while the database does not answer,
each replica goes on counting in memory alone. Lock times are epoch seconds of the replica that
counted the failure (replicas' clocks are assumed NTP-synchronised to well under the lock period).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any

from sqlalchemy import Engine, delete, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from jobtail.auth.lockout import LIMIT, MAX_ENTRIES, PERIOD, Lockout
from jobtail.auth.notifications import listen
from jobtail.auth.schema import auth_failures

log = logging.getLogger("jobtail.auth")

CHANNEL = "jobtail_lockout"
_SWEEP_SECONDS = 60.0  # how often the writer deletes rows whose last failure is a period old


class SharedLockout(Lockout):
    """See the module docstring. `close()` stops both threads (pending writes are applied first)."""

    def __init__(self, engine: Engine, limit: int = LIMIT, period: float = PERIOD,
                 max_entries: int = MAX_ENTRIES) -> None:
        super().__init__(limit, period, max_entries, clock=time.time)
        self._engine = engine
        self._writes: queue.Queue[tuple[str, str, str] | None] = queue.Queue(maxsize=10_000)
        self._stop = threading.Event()
        self._live = threading.Event()
        self._swept_at = 0.0
        self._writer = threading.Thread(target=self._write_loop, name="jobtail-lockout-writer", daemon=True)
        self._listener = threading.Thread(target=self._listen, name="jobtail-lockout-listener", daemon=True)
        self._writer.start()
        self._listener.start()

    # -- the request path -------------------------------------------------------------------------

    def failed(self, key: str, address: str) -> bool:
        locks = super().failed(key, address)
        self._queue("failed", key, address)
        return locks

    def succeeded(self, key: str, address: str) -> None:
        if (key, address) in self._entries:  # (a dict lookup: the common case ends here)
            super().succeeded(key, address)
            self._queue("succeeded", key, address)

    def _queue(self, what: str, key: str, address: str) -> None:
        try:
            self._writes.put_nowait((what, key, address))
        except queue.Full:  # a flood of failures: memory keeps counting; the database misses some
            log.warning("lockout writes are behind; counting in memory only")

    # -- threads ------------------------------------------------------------------------------------

    def wait_live(self, timeout: float) -> bool:
        """For tests and benchmarks: wait until the listener is connected."""
        return self._live.wait(timeout)

    def close(self) -> None:
        self._writes.put(None)
        self._writer.join(timeout=10)
        self._stop.set()
        self._listener.join(timeout=10)

    def _write_loop(self) -> None:
        while (item := self._writes.get()) is not None:
            what, key, address = item
            try:
                if what == "failed":
                    self._count(key, address)
                else:
                    self._reset(key, address)
                self._sweep()
            except Exception:
                log.warning("could not record a lockout %s in the database", what, exc_info=True)

    def _count(self, key: str, address: str) -> None:
        now = time.time()
        where = (auth_failures.c.key == key, auth_failures.c.address == address)
        with self._engine.begin() as conn:
            conn.execute(pg_insert(auth_failures).values(key=key, address=address, failures=0, locked_until=0.0,
                                                         failed_at=now).on_conflict_do_nothing())
            row = conn.execute(select(auth_failures.c.failures, auth_failures.c.locked_until).where(*where)
                               .with_for_update()).one()
            failures, until = row.failures, row.locked_until
            if until and until <= now:  # an expired lock starts the count afresh
                failures, until = 0, 0.0
            failures += 1
            if failures >= self.limit and not until:
                until = now + self.period
            conn.execute(update(auth_failures).where(*where).values(failures=failures, locked_until=until, failed_at=now))
            self._notify(conn, {"key": key, "address": address, "failures": failures, "until": until})

    def _reset(self, key: str, address: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(auth_failures).where(auth_failures.c.key == key, auth_failures.c.address == address))
            self._notify(conn, {"key": key, "address": address, "failures": 0, "until": 0.0})

    def _sweep(self) -> None:
        now = time.time()
        if now - self._swept_at < _SWEEP_SECONDS:
            return
        self._swept_at = now
        with self._engine.begin() as conn:
            conn.execute(delete(auth_failures).where(auth_failures.c.failed_at < now - self.period,
                                                     auth_failures.c.locked_until < now))

    @staticmethod
    def _notify(conn: Any, state: dict[str, Any]) -> None:
        conn.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": json.dumps(state)})

    def _apply(self, state: dict[str, Any]) -> None:
        pair = (str(state["key"]), str(state["address"]))
        with self._lock:
            self._entries.pop(pair, None)
            if int(state["failures"]) > 0:
                self._entries[pair] = (int(state["failures"]), float(state["until"]))
                while len(self._entries) > self._max:
                    self._entries.popitem(last=False)

    def _reload(self) -> None:
        now = time.time()
        with self._engine.connect() as conn:
            rows = conn.execute(select(auth_failures).where(auth_failures.c.failed_at >= now - self.period)
                                .order_by(auth_failures.c.failed_at).limit(self._max)).all()
        with self._lock:
            self._entries.clear()
            for row in rows:
                self._entries[(row.key, row.address)] = (row.failures, row.locked_until)

    def _listen(self) -> None:
        listen(self._engine, CHANNEL, self._stop, connected=self._connected,
               notified=lambda payload: self._apply(json.loads(payload)), disconnected=self._live.clear, log=log)

    def _connected(self) -> None:
        self._reload()  # whatever was counted while we were not listening
        self._live.set()
