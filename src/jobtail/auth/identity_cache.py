"""Request-path identity lookups kept in memory, invalidated by PostgreSQL notifications.

Over the network each lookup costs a thread hop and round trips (~1 ms on a busy machine); from
memory it costs microseconds. Correctness across replicas comes from `LISTEN`/`NOTIFY`: every
identity write sends a notification in its own transaction (delivered when it commits), and a
listener thread in every process drops the whole cache when one arrives, so a revoked credential
or a removed role stops working on every replica within milliseconds.

Safety rules:
- Only found credentials and tokens are cached, never "no such key" (a new key needs no notice).
- A lookup that started before an invalidation does not store its (possibly stale) answer: the
  generation counter is compared before storing.
- While the listener is not connected (starting, or after a dropped connection) nothing is
  served from memory; on reconnecting the cache starts empty.
- Entries also expire after `TTL` seconds, so a change made by hand in SQL (which sends no
  notification) is picked up within that time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from jobtail.auth.notifications import listen

log = logging.getLogger("jobtail.identity")

CHANNEL = "jobtail_identity"
TTL = 60.0
MAX_ENTRIES = 50_000


class NotifiedCache:
    def __init__(self, engine: Engine, clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self._clock = clock
        self._entries: dict[tuple[str, str, str], tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._generation = 0
        self._live = False  # the listener is connected: memory may answer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="jobtail-identity-listener", daemon=True)
        self._thread.start()

    @property
    def generation(self) -> int:
        return self._generation

    def get(self, key: tuple[str, str, str]) -> Any | None:
        entry = self._entries.get(key)
        if entry is None or not self._live or entry[0] < self._clock():
            return None
        return entry[1]

    def put(self, key: tuple[str, str, str], value: Any, generation: int) -> None:
        """Store `value` if no invalidation happened since `generation` was read."""
        with self._lock:
            if not self._live or generation != self._generation:
                return
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (self._clock() + TTL, value)

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def wait_live(self, timeout: float) -> bool:
        """For tests and benchmarks: wait until the listener is connected."""
        deadline = time.monotonic() + timeout
        while not self._live and time.monotonic() < deadline:
            time.sleep(0.01)
        return self._live

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _listen(self) -> None:
        listen(self._engine, CHANNEL, self._stop, connected=self._connected,
               notified=lambda _: self.invalidate(), disconnected=self._disconnected, log=log)

    def _connected(self) -> None:
        self.invalidate()  # whatever changed while we were not listening
        self._live = True

    def _disconnected(self) -> None:
        self._live = False
        self.invalidate()
