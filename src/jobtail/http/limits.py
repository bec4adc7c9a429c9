"""Per-credential request rate limit: a token bucket per principal name, in each process's memory.

Like API Gateway's default throttling, every authenticated caller may make `rate` requests per
second, in bursts of up to one second's worth; one more is refused with 429 `APIGW.0308` and a
`Retry-After` header saying when a request will be accepted again. Anonymous callers (the
`OpenGuard` of tests and in-process tools) are not limited. Each process limits on its own,
so N processes on one SQLite file may admit up to N × `rate`; replicas sharing a PostgreSQL
database exchange what they admitted (`share`, `jobtail.auth.shared_rates`) and admit about
`rate` in total.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping

from jobtail import metrics
from jobtail.http.access import Principal
from jobtail.http.errors import ApiError

log = logging.getLogger("jobtail.http")

THROTTLED = "The throttling threshold has been reached."
_MAX_BUCKETS = 100_000  # past this, buckets that have refilled are forgotten
SYNC_SECONDS = 0.1  # how often a shared limiter exchanges what it admitted with the other replicas
ACTIVE_SECONDS = 10.0  # a principal this process admitted within this long is exchanged

# (this process's running totals that moved, the principals to ask about) -> the other processes'
# running totals for those, keyed (process, principal): `SpendExchange.exchange`
Exchange = Callable[[Mapping[str, int], list[str]], Mapping[tuple[str, str], int]]


class RateLimiter:
    """Token buckets keyed by principal name; `rate` 0 turns limiting off.

    `take` is called from the event loop; after `share`, a thread of the limiter's own also takes
    the other replicas' spending out of the buckets, so both hold `_lock` (never contended for
    long: the database is asked outside it). `close()` stops that thread.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, as of)
        self._lock = threading.Lock()
        self._spent: dict[str, int] = {}  # name -> requests admitted here (a running total), when shared
        self._admitted_at: dict[str, float] = {}  # name -> when this process last admitted one
        self._stop = threading.Event()
        self._sharing: threading.Thread | None = None

    def take(self, principal: Principal) -> None:
        """Spend one request of `principal`'s allowance, or raise the 429 ApiError."""
        if self.rate <= 0 or principal.kind == "anonymous":
            return
        name = principal.name
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.get(name, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens < 1.0:
                self._buckets[name] = (tokens, now)
                wait = max(1, math.ceil((1.0 - tokens) / self.rate))
                metrics.refused("requests")
                raise ApiError(429, "APIGW.0308", THROTTLED, headers={"Retry-After": str(wait)})
            if len(self._buckets) >= _MAX_BUCKETS and name not in self._buckets:
                self._forget_full(now)
            self._buckets[name] = (tokens - 1.0, now)
            if self._sharing is not None:
                self._spent[name] = self._spent.get(name, 0) + 1
                self._admitted_at[name] = now

    def share(self, exchange: Exchange) -> None:
        """Admit about `rate` per principal across the processes that `exchange` connects (see
        `jobtail.auth.shared_rates`): start the thread that trades spending every SYNC_SECONDS."""
        if self.rate <= 0 or self._sharing is not None:
            return
        self._sharing = threading.Thread(target=self._share_loop, args=(exchange,), name="jobtail-rate-sharing",
                                         daemon=True)
        self._sharing.start()

    def close(self) -> None:
        self._stop.set()
        if self._sharing is not None:
            self._sharing.join(timeout=10)

    def _share_loop(self, exchange: Exchange) -> None:
        sent: dict[str, int] = {}  # the running totals as last written
        seen: dict[tuple[str, str], int] = {}  # the others' running totals as last read
        failing = False
        while not self._stop.wait(SYNC_SECONDS):
            with self._lock:
                now = self._clock()
                for name in [n for n, at in self._admitted_at.items() if now - at >= ACTIVE_SECONDS]:
                    del self._admitted_at[name], self._spent[name]  # a running total may start again at 0
                    sent.pop(name, None)
                active = list(self._admitted_at)
                moved = {n: self._spent[n] for n in active if self._spent[n] != sent.get(n)}
            if not active:  # nobody to limit: no statement
                seen.clear()
                continue
            try:
                others = exchange(moved, active)
            except Exception:  # the database is away: each process limits alone meanwhile
                if not failing:
                    log.warning("could not exchange rate-limit spending with the other replicas", exc_info=True)
                failing = True
                continue
            failing = False
            sent.update(moved)
            debits: dict[str, int] = {}
            for key, total in others.items():
                if key in seen:  # a total first seen is the baseline: its past is not charged
                    # a total below the last one started again from 0 (that process forgot the name)
                    spent = total - seen[key] if total >= seen[key] else total
                    debits[key[1]] = debits.get(key[1], 0) + spent
            seen = dict(others)
            with self._lock:
                now = self._clock()
                for name, spent in debits.items():
                    if spent and name in self._buckets:
                        tokens, at = self._buckets[name]
                        tokens = min(self.burst, tokens + (now - at) * self.rate)
                        self._buckets[name] = (max(-self.burst, tokens - spent), now)

    def _forget_full(self, now: float) -> None:
        full = [name for name, (tokens, at) in self._buckets.items() if tokens + (now - at) * self.rate >= self.burst]
        for name in full:
            del self._buckets[name]
