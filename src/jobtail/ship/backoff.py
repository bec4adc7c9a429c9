"""Exponential backoff with full jitter, for retrying requests to a server that is away."""

from __future__ import annotations

import random
import threading


class Backoff:
    """Delays of `uniform(0, min(cap, base * 2**n))` for the n-th retry in a row ("full jitter":
    shippers that lost the same server do not come back in lockstep)."""

    def __init__(self, base: float = 0.1, cap: float = 5.0, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        delay = self._rng.uniform(0.0, min(self.cap, self.base * 2.0 ** min(self.failures, 32)))
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0

    def wait(self, stop: threading.Event, at_least: float = 0.0) -> bool:
        """Sleep the next delay (at least `at_least` seconds); False when `stop` was set meanwhile."""
        return not stop.wait(max(at_least, self.next_delay()))
