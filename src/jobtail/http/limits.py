"""Per-credential request rate limit: a token bucket per principal name, in each process's memory.

Like API Gateway's default throttling, every authenticated caller may make `rate` requests per
second, in bursts of up to one second's worth; one more is refused with 429 `APIGW.0308` and a
`Retry-After` header saying when a request will be accepted again. Anonymous callers (the
`OpenGuard` of tests and in-process tools) are not limited. With N server processes or replicas
a caller may make up to N × `rate` requests per second in total.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from jobtail import metrics
from jobtail.http.access import Principal
from jobtail.http.errors import ApiError

THROTTLED = "The throttling threshold has been reached."
_MAX_BUCKETS = 100_000  # past this, buckets that have refilled are forgotten


class RateLimiter:
    """Token buckets keyed by principal name; `rate` 0 turns limiting off.

    Called from the event loop only (one thread), so it needs no lock.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, as of)

    def take(self, principal: Principal) -> None:
        """Spend one request of `principal`'s allowance, or raise the 429 ApiError."""
        if self.rate <= 0 or principal.kind == "anonymous":
            return
        now = self._clock()
        tokens, at = self._buckets.get(principal.name, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[principal.name] = (tokens, now)
            wait = max(1, math.ceil((1.0 - tokens) / self.rate))
            metrics.refused("requests")
            raise ApiError(429, "APIGW.0308", THROTTLED, headers={"Retry-After": str(wait)})
        if len(self._buckets) >= _MAX_BUCKETS and principal.name not in self._buckets:
            self._forget_full(now)
        self._buckets[principal.name] = (tokens - 1.0, now)

    def _forget_full(self, now: float) -> None:
        full = [name for name, (tokens, at) in self._buckets.items() if tokens + (now - at) * self.rate >= self.burst]
        for name in full:
            del self._buckets[name]
