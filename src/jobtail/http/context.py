"""What every request handler works with, typed: `context(request)`.

One `AppContext` per app, made in the lifespan from the `Services` the app was opened with
(`jobtail.services`) and the HTTP layer's own per-process parts: the guard, the rate limiter, the
cap on unproven body reads, live-follow bookkeeping and the API description.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
from starlette.requests import Request

from jobtail.core.jobs import JobService
from jobtail.core.store import LogStore
from jobtail.http.access import Guard
from jobtail.http.bodies import UnverifiedReads
from jobtail.http.following import Following
from jobtail.http.limits import RateLimiter
from jobtail.services import Services
from jobtail.settings import Settings


@dataclass(frozen=True, slots=True)
class AppContext:
    settings: Settings
    services: Services
    guard: Guard
    limiter: RateLimiter
    unverified_reads: UnverifiedReads
    following: Following
    logins: anyio.CapacityLimiter  # password checks at once (each scrypt check takes ~16 MiB)
    openapi: bytes

    @property
    def store(self) -> LogStore:
        return self.services.store

    @property
    def jobs(self) -> JobService:
        return self.services.jobs


def context(request: Request) -> AppContext:
    """The app's context; only valid while the app runs (after its lifespan started)."""
    found = request.app.state.context
    assert isinstance(found, AppContext), "the app's lifespan has not started"
    return found
