"""Request bodies: read bounded, hashed while they arrive, and few at once from unproven callers.

A body is read only after the Guard has checked what it can without it (`Guard.admit`), so a
caller with no or bad credentials costs a 401 and no memory. What is left are bodies of callers
whose proof needs the body itself (a signature covering the body's SHA-256) and of public
operations (a password login): `UnverifiedReads` lets at most `max_unverified_body_reads` of
those be read at once per process, so they hold at most that many times `max_body_bytes`.
One more is refused at once with 429 `APIGW.0308` and `Retry-After`, rather than kept waiting:
a slot is held for as long as its sender takes to send, so waiting would help only against
contention that reading in-memory bodies does not cause, and would tie up the waiting caller.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.requests import Request

from jobtail import metrics
from jobtail.http.errors import ApiError, PayloadTooLarge
from jobtail.http.limits import THROTTLED

RETRY_AFTER_SECONDS = 1


def refuse_declared_oversize(request: Request, limit: int) -> None:
    """Raise PayloadTooLarge when the request's Content-Length already says it is over `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit)


async def read_body(request: Request, limit: int, *, hashed: bool) -> tuple[bytes, str | None]:
    """The request body, refusing (before reading it all) anything over `limit` bytes, and when
    `hashed` its lowercase hex SHA-256, taken chunk by chunk as the body arrives (else None: a
    caller proven before its body needs no hash, and 1 MiB costs 0.5 ms to hash)."""
    refuse_declared_oversize(request, limit)
    digest = hashlib.sha256() if hashed else None
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        if digest is not None:
            digest.update(chunk)
        parts.append(chunk)
    return b"".join(parts), None if digest is None else digest.hexdigest()


class UnverifiedReads:
    """A count of the bodies being read for callers not yet proven, capped at `cap`.

    Used from the event loop only (one thread), so a plain counter suffices.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.active = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the `cap` slots while the body is read; raise the 429 ApiError when none is free."""
        if self.active >= self.cap:
            metrics.refused("bodies")
            raise ApiError(429, "APIGW.0308", THROTTLED, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
