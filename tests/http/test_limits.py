"""The per-credential token bucket, alone and shared by replicas (the shipper's side of a 429 is in
tests/ship/test_uplink.py)."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pytest
from support.postgres import PostgresServer
from support.serve import ServeProcess

from jobtail.client import Client, Credentials
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


def test_replicas_sharing_a_postgresql_database_admit_one_allowance_between_them(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """Two `jobtail serve` on one PostgreSQL database, requests alternating between them as fast
    as a client sends them for 3 s: together they admit about one bucket (a burst of `rate`, then
    `rate` a second), where two per-process limiters would admit twice that."""
    rate, seconds = 5, 3.0  # a low rate: the client outruns it even on a loaded machine
    shared = ("--database-url", postgres.create_database(f"rates_{os.getpid()}"),
              "--blob-url", (tmp_path / "blobs").as_uri(), "--rate-limit-per-second", str(rate))
    replicas = [ServeProcess(tmp_path / "data", *shared), ServeProcess(tmp_path / "data", *shared)]
    try:
        for replica in replicas:  # the first start bootstraps the project and writes credentials.json
            replica.start()
        credentials = Credentials.load(replicas[0].admin_credentials())
        path = f"/v2/{replicas[0].project()}/training-jobs/{uuid.uuid4()}"  # no such job: ModelArts.2775 once admitted
        answered: Counter[int] = Counter()
        with Client(replicas[0].url, credentials=credentials) as first, \
                Client(replicas[1].url, credentials=credentials) as second:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                for client in (first, second):
                    answered[client.request("GET", path).status_code] += 1
    finally:
        for replica in replicas:
            replica.kill()
    allowance = rate + rate * seconds  # 20: what one limiter admits in the time
    admitted = sum(count for status, count in answered.items() if status != 429)
    assert answered[429] > admitted, answered  # the client sent enough to be limited
    # two limiters alone would admit 2 × 20; the exchange lags by 0.1 s, so a little over 20 may pass
    assert 0.75 * allowance <= admitted <= 1.3 * allowance, answered


def test_a_shared_limiter_charges_what_other_processes_admitted_since_it_last_asked() -> None:
    calls: list[tuple[dict[str, int], list[str]]] = []

    def exchange(moved: Mapping[str, int], names: list[str]) -> dict[tuple[str, str], int]:
        calls.append((dict(moved), list(names)))
        # another process had admitted 100 of alice's before this one asked (not charged), then 10 more
        return {("other", "alice"): 100 if len(calls) == 1 else 110}

    limiter = RateLimiter(2.0)
    alice = Principal("alice", kind="project")
    limiter.share(exchange)
    try:
        limiter.take(alice)  # 1 of the burst of 2 left: alone, the next would pass
        deadline = time.monotonic() + 30
        while len(calls) < 3:
            assert time.monotonic() < deadline, "the limiter never exchanged"
            time.sleep(0.05)
        with pytest.raises(ApiError) as refused:
            limiter.take(alice)  # the other process's 10 came out of this bucket
        assert refused.value.status == 429
    finally:
        limiter.close()
    assert calls[0] == ({"alice": 1}, ["alice"])  # this process's running total, once it moved
    assert all(moved == {} for moved, _ in calls[1:])  # unchanged totals are not written again
