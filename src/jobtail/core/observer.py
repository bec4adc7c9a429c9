"""What the log store reports as it works, for metrics: a protocol core calls and never
implements beyond doing nothing (`jobtail.metrics.STORE` is the server's)."""

from __future__ import annotations

from typing import Protocol


class StoreObserver(Protocol):
    def appended(self, nbytes: int) -> None:
        """An append stored `nbytes` new bytes."""

    def sealed(self, nbytes: int, seconds: float) -> None:
        """A segment of `nbytes` was written and recorded in `seconds`."""

    def preview_cache(self, hit: bool) -> None:
        """An encoded preview was found in memory (`hit`) or had to be made."""


class Unobserved:
    def appended(self, nbytes: int) -> None:
        pass

    def sealed(self, nbytes: int, seconds: float) -> None:
        pass

    def preview_cache(self, hit: bool) -> None:
        pass
