"""Executor leases in a database that several replicas share (PostgreSQL): who is still alive.

Every replica's executor, once it holds its data directory's lock (`jobtail.runner.owner.Lease`),
registers a lease row named by its `Owner` — the string its jobs carry in `owner` — and bumps the
row's `beats` every `RENEW_SECONDS`. Each executor also watches its peers' rows: a row whose
`beats` has not moved for `owner_lease_seconds` *of the watcher's own monotonic clock* belongs to
a lost host (no wall clocks are compared across hosts). The first watcher to take it over
(compare-and-set on `beats`) ends that owner's jobs — Running/Terminating ones become Abnormal
with an event naming the host, queued ones go back to Creating — and deletes the row.

A job never runs on two hosts at once, even when the lost host comes back (a SIGSTOPped or
partitioned replica): its `Fence` is valid only until `owner_lease_seconds` after the start of
its last successful renewal, by the same monotonic clock, which keeps running while a process is
stopped. Past that, nothing of the executor writes for its jobs — task output waits in its
capture thread — until a renewal settles it: renewed (no peer took over: carry on), or lost (a
peer took over: the executor stops its processes, drops their output without writing a byte or
an event, and registers afresh under a new owner). Since a watcher waits a full lease after it
*saw* the last beat, and the owner's fence ends a lease after it *began* that beat, the old
owner's fence has always closed before a peer ends its jobs.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Protocol

log = logging.getLogger("jobtail.runner")

RENEW_SECONDS = 1.0
TAKEN = -1  # the beats of a lease a peer has taken over


class ExecutorLeases(Protocol):
    """The lease rows (`jobtail.meta.sql_leases`)."""

    def register(self, owner: str, host: str) -> None: ...

    def renew(self, owner: str) -> bool:
        """Bump `owner`'s beats; False when its row is gone or taken over."""
        ...

    def beats(self) -> dict[str, tuple[str, int]]:
        """Every lease: owner → (host, beats)."""
        ...

    def take(self, owner: str, beats: int) -> bool:
        """Take over `owner`'s lease if its beats still are `beats`; True for the one winner."""
        ...

    def drop(self, owner: str) -> None: ...


class Fence:
    """Whether an executor may still write for the jobs of one owner (module docstring)."""

    def __init__(self, seconds: float = math.inf) -> None:
        self.seconds = seconds
        self._valid_until = math.inf if seconds == math.inf else time.monotonic() + seconds
        self._lost = False
        self._settled = threading.Condition()

    def valid(self) -> bool:
        return not self._lost and time.monotonic() < self._valid_until

    @property
    def lost(self) -> bool:
        return self._lost

    def wait(self) -> bool:
        """Block while the lease is unsettled; True when writing may go on, False once it is lost."""
        with self._settled:
            while not self._lost and time.monotonic() >= self._valid_until:
                self._settled.wait(RENEW_SECONDS)
            return not self._lost

    def renewed(self, began: float) -> None:
        with self._settled:
            self._valid_until = max(self._valid_until, began + self.seconds)
            self._settled.notify_all()

    def lose(self) -> None:
        with self._settled:
            self._lost = True
            self._settled.notify_all()


class SharedLease:
    """One executor's lease and its watch over its peers' (module docstring)."""

    def __init__(self, leases: ExecutorLeases, seconds: float) -> None:
        self.leases = leases
        self.seconds = seconds
        self.owner = ""
        self.fence = Fence()
        self._renewed_at = -math.inf
        self._watched_at = -math.inf
        self._seen: dict[str, tuple[int, float]] = {}  # peer → (beats, when they last moved)

    def begin(self, owner: str, host: str) -> Fence:
        """Register `owner`'s lease; its fence is valid for one lease from now."""
        began = time.monotonic()
        self.leases.register(owner, host)
        self.owner, self.fence, self._renewed_at = owner, Fence(self.seconds), began
        self.fence.renewed(began)
        return self.fence

    def renew(self) -> bool:
        """Renew when due (always when the fence has closed); False once the lease is lost. A
        database that does not answer is no verdict: the fence closes by itself meanwhile."""
        now = time.monotonic()
        if self.fence.valid() and now - self._renewed_at < RENEW_SECONDS:
            return True
        try:
            renewed = self.leases.renew(self.owner)
        except Exception:
            log.warning("could not renew the executor lease; retrying", exc_info=True)
            return True
        if not renewed:
            self.fence.lose()
            return False
        self._renewed_at = now
        self.fence.renewed(now)
        return True

    def lost_peers(self) -> list[tuple[str, str]]:
        """The peers (owner, host) whose lease stood still for a whole lease and that this
        executor took over (at most one watcher wins each); checked every RENEW_SECONDS."""
        now = time.monotonic()
        if now - self._watched_at < RENEW_SECONDS:
            return []
        self._watched_at = now
        taken = []
        current = self.leases.beats()
        for owner, (host, beats) in current.items():
            if owner == self.owner:
                continue
            seen = self._seen.get(owner)
            if seen is None or seen[0] != beats:
                self._seen[owner] = (beats, now)
            elif now - seen[1] >= self.seconds and self.leases.take(owner, beats):
                taken.append((owner, host))
        self._seen = {owner: seen for owner, seen in self._seen.items() if owner in current}
        return taken

    def ended(self, owner: str) -> None:
        """A lost peer's jobs are ended: its row goes."""
        self.leases.drop(owner)
        self._seen.pop(owner, None)

    def end(self) -> None:
        """This executor stops (its jobs were ended by its shutdown): its row goes."""
        if self.owner:
            self.leases.drop(self.owner)
