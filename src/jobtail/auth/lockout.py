"""Lock out a credential from one client address after repeated failures, as API Gateway does.

Counted per (key, client address): someone who guesses an access key but sends from another
address cannot lock its owner out. State is in memory, per process: with N server processes an
attacker gets up to N times the attempts, and a restart forgets every lock. Replicas on a shared
PostgreSQL database count in it instead (`jobtail.auth.shared_lockout`, a subclass).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

LIMIT = 5  # consecutive failures ...
PERIOD = 300.0  # ... lock the (key, address) for this many seconds
MAX_ENTRIES = 100_000  # bounded memory: the least recently failed entries are forgotten first


class Lockout:
    def __init__(self, limit: int = LIMIT, period: float = PERIOD, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.period = period
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], tuple[int, float]] = OrderedDict()  # failures, locked until

    def locked(self, key: str, address: str) -> bool:
        """True while (key, address) is locked; an expired lock is forgotten."""
        with self._lock:
            entry = self._entries.get((key, address))
            if entry is None or entry[1] == 0.0:
                return False
            if self._clock() < entry[1]:
                return True
            del self._entries[(key, address)]
            return False

    def failed(self, key: str, address: str) -> bool:
        """Count a failure; True when this one locks (key, address)."""
        with self._lock:
            failures, _ = self._entries.pop((key, address), (0, 0.0))
            failures += 1
            until = self._clock() + self.period if failures >= self.limit else 0.0
            self._entries[(key, address)] = (failures, until)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
            return until != 0.0

    def succeeded(self, key: str, address: str) -> None:
        """A success resets the count."""
        with self._lock:
            self._entries.pop((key, address), None)
