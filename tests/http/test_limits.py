"""The per-credential token bucket (the HTTP behaviour is in tests/ship/test_uplink.py)."""

from __future__ import annotations

import pytest

from jobtail.http.access import Principal
from jobtail.http.errors import ApiError
from jobtail.http.limits import RateLimiter


def test_a_bucket_per_principal_refills_at_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(2.0, clock=lambda: now[0])
    alice, bob = Principal("alice", kind="project"), Principal("bob", kind="user")
    limiter.take(alice)
    limiter.take(alice)
    with pytest.raises(ApiError) as refused:
        limiter.take(alice)
    assert (refused.value.status, refused.value.code, refused.value.headers) == (429, "APIGW.0308", {"Retry-After": "1"})
    limiter.take(bob)  # another caller has its own allowance
    now[0] = 0.5
    limiter.take(alice)
    with pytest.raises(ApiError):
        limiter.take(alice)


def test_zero_turns_it_off_and_anonymous_callers_are_not_limited() -> None:
    off = RateLimiter(0.0)
    for _ in range(1000):
        off.take(Principal("alice", kind="project"))
    on = RateLimiter(1.0)
    for _ in range(1000):
        on.take(Principal("anonymous"))
