"""The shipper's requests against the server's limits: the size endpoint, the per-credential
rate limit (429 `APIGW.0308`, retried after `Retry-After`) and the task log size cap."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from support.engine import new_job
from support.serve import IngestServer

from jobtail.ship.backoff import Backoff
from jobtail.ship.uplink import Diverged, ShipFailed, Uplink


def uplink(ingest: IngestServer, task: str = "worker-0") -> Uplink:
    return Uplink(ingest.client(), ingest.job_id, task, backoff=Backoff(base=0.01, cap=0.05), stop=threading.Event())


def test_the_size_endpoint_is_for_appenders_of_that_job(ingest: IngestServer) -> None:
    up = uplink(ingest)
    assert up.end() == 0
    assert up.append(0, b"abc") == 3 and up.end() == 3
    assert up.append(0, b"abc") == 3  # a retried batch is acknowledged, not stored twice
    with pytest.raises(Diverged) as gap:
        up.append(5, b"x")
    assert gap.value.full_size == 3
    other = new_job(ingest.store, ingest.project, "other").id
    with ingest.client() as client:  # limited to its own job
        r = client.request("GET", f"/v2/{ingest.project}/training-jobs/{other}/tasks/worker-0/logs/size")
        assert (r.status_code, r.json()["error_code"]) == (403, "ModelArts.0108")
        r = client.request("GET", f"/v2/{ingest.project}/training-jobs/{ingest.job_id}/tasks/worker-0/logs/preview")
        assert r.status_code == 403  # ingest appends, and nothing else
    up.client.close()


def test_over_the_rate_limit_is_429_and_the_shipper_waits_it_out(
    ingest_factory: Callable[..., IngestServer],
) -> None:
    ingest = ingest_factory(rate_limit_per_second=5)
    path = f"/v2/{ingest.project}/training-jobs/{ingest.job_id}/tasks/worker-0/logs/size"
    with ingest.client() as client:
        statuses = [client.request("GET", path) for _ in range(8)]
    refused = [r for r in statuses if r.status_code == 429]
    assert refused and statuses[0].status_code == 200
    assert refused[0].json()["error_code"] == "APIGW.0308"
    assert refused[0].json()["error_msg"] == "The throttling threshold has been reached."
    assert int(refused[0].headers["Retry-After"]) >= 1
    up = uplink(ingest)
    offset = up.end()
    for i in range(6):
        offset = up.append(offset, f"line {i}\n".encode())
    assert up.retries > 0
    assert ingest.log() == b"".join(f"line {i}\n".encode() for i in range(6))
    up.client.close()


def test_the_task_log_size_cap_refuses_whole_appends(ingest_factory: Callable[..., IngestServer]) -> None:
    ingest = ingest_factory(max_log_bytes=100)
    up = uplink(ingest)
    assert up.append(0, b"a" * 60) == 60
    with ingest.client() as client:
        r = client.request("POST", f"/v2/{ingest.project}/training-jobs/{ingest.job_id}/tasks/worker-0/logs",
                           params={"offset": 60}, content=b"b" * 41)
    assert (r.status_code, r.json()["error_code"]) == (400, "ModelArts.2815")
    assert (r.json()["full_size"], r.json()["max_log_bytes"]) == (60, 100)
    assert up.append(0, b"a" * 60) == 60  # a repeat stores nothing, so it is still acknowledged
    with pytest.raises(ShipFailed, match=r"ModelArts\.2815"):
        up.append(60, b"b" * 41)
    assert up.append(60, b"b" * 40) == 100
    assert ingest.log() == b"a" * 60 + b"b" * 40
    up.client.close()
