"""`/metrics` of a real `jobtail serve`: the text parses with prometheus_client's parser, counters
move by exactly what a known sequence of requests did (one worker and two), and who may read it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.serve import ServeProcess, jobtail

from jobtail.client import Client, Credentials, connect

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
REQUESTS = "jobtail_http_request_duration_seconds_count"


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def scrape(url: str, **headers: str) -> Samples:
    response = httpx.get(url + "/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def requests(before: Samples, after: Samples, operation: str, status: int) -> float:
    return delta(before, after, REQUESTS, operation=operation, status=str(status))


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    yield started
    for server in started:
        server.stop()


def start(started: list[ServeProcess], data_dir: Path, *options: str) -> ServeProcess:
    server = ServeProcess(data_dir, *options)
    started.append(server)
    server.start()
    return server


def new_job(server: ServeProcess) -> str:
    return jobtail("admin", "job", "create", "--project", server.project(), "--name", "m", "--data-dir",
                   str(server.data_dir)).strip()


def credential(server: ServeProcess, role: str, secret: str | None = None) -> Client:
    out = json.loads(jobtail("admin", "credential", "create", "--project", server.project(), "--role", role,
                             "--json", "--data-dir", str(server.data_dir)))
    return Client(server.url, credentials=Credentials(out["access_key"], secret or out["secret_key"],
                                                      server.project()))


def test_counters_move_by_what_a_known_sequence_of_requests_did(serve: list[ServeProcess], tmp_path: Path) -> None:
    # 3 s: a pause of the loaded machine between the appends must not seal twice (one seal is counted)
    server = start(serve, tmp_path / "data", "--seal-idle-seconds", "3")
    job = new_job(server)
    logs = f"/v2/{server.project()}/training-jobs/{job}/tasks/worker-0/logs"
    admin = connect(server.url, credentials_file=server.admin_credentials())
    before = scrape(server.url)
    bodies = [b"epoch 1 loss 0.9\n", b"epoch 2 loss 0.5\n" * 3, b"done\n"]
    for body in bodies:
        assert admin.request("POST", logs, content=body).status_code == 200
    assert admin.request("POST", logs + "?offset=0", content=bodies[0]).status_code == 200  # a repeat: no bytes
    assert admin.request("GET", logs + "/preview").status_code == 200  # encoded: a miss
    assert admin.request("GET", logs + "/preview").status_code == 200  # from memory: a hit
    assert httpx.get(server.url + logs + "/preview").status_code == 401
    missing = admin.request("GET", logs.replace(job, "00000000-0000-4000-8000-000000000000") + "/preview")
    assert missing.status_code >= 400  # no such job: an error of the contract's
    for _ in range(3):
        assert httpx.get(server.url + "/healthz").status_code == 200
    assert httpx.get(server.url + "/no/such/route").status_code == 404
    segments = server.data_dir / "blobs" / "jobs" / job / "worker-0"
    deadline = time.monotonic() + 30
    while not (segments.exists() and any(segments.iterdir())):  # the idle head is sealed
        assert time.monotonic() < deadline, "the idle head was never sealed"
        time.sleep(0.1)
    after = scrape(server.url)
    while delta(before, after, "jobtail_seal_duration_seconds_count") == 0:  # recorded just after the blob
        assert time.monotonic() < deadline, "the seal was never counted"
        time.sleep(0.1)
        after = scrape(server.url)
    size = sum(map(len, bodies))
    assert requests(before, after, "AppendTrainingJobTaskLog", 200) == 4
    assert requests(before, after, "ShowTrainingJobLogsPreview", 200) == 2
    assert requests(before, after, "ShowTrainingJobLogsPreview", 401) == 1
    assert requests(before, after, "ShowTrainingJobLogsPreview", missing.status_code) == 1
    assert requests(before, after, "Health", 200) == 3
    assert requests(before, after, "unmatched", 404) == 1
    assert requests(before, after, "Metrics", 200) >= 1  # the first scrape, and any while waiting
    assert delta(before, after, "jobtail_appends_total") == 3
    assert delta(before, after, "jobtail_ingested_bytes_total") == size
    assert delta(before, after, "jobtail_preview_cache_lookups_total", result="miss") == 1
    assert delta(before, after, "jobtail_preview_cache_lookups_total", result="hit") == 1
    assert delta(before, after, "jobtail_seal_duration_seconds_count") == 1
    assert delta(before, after, "jobtail_sealed_bytes_total") == size
    assert value(after, "jobtail_follow_streams") == 0
    assert value(after, "jobtail_seal_duration_seconds_bucket", le="+Inf") == value(after, "jobtail_seal_duration_seconds_count")
    # the histogram's buckets are cumulative and end at the count
    buckets = sorted((float(dict(labels)["le"]), v) for (name, labels), v in after.items()
                     if name == "jobtail_http_request_duration_seconds_bucket"
                     and dict(labels)["operation"] == "Health" and dict(labels)["status"] == "200")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    assert buckets[-1][1] == value(after, REQUESTS, operation="Health", status="200")

    # a follow stream is counted while it is open
    with admin.http.stream("GET", logs + "/stream?offset=0") as stream:
        assert stream.status_code == 200
        assert value(scrape(server.url), "jobtail_follow_streams") == 1
    deadline = time.monotonic() + 30
    while value(scrape(server.url), "jobtail_follow_streams") != 0:
        assert time.monotonic() < deadline, "the closed stream is still counted"
        time.sleep(0.1)

    # five bad signatures lock the AK out: one lockout, five (then six) 401s
    wrong = credential(server, "viewer", secret="0" * 40)
    before = scrape(server.url)
    for _ in range(6):
        assert wrong.request("GET", logs + "/preview").status_code == 401
    after = scrape(server.url)
    assert delta(before, after, "jobtail_lockouts_total", kind="access_key") == 1
    assert requests(before, after, "ShowTrainingJobLogsPreview", 401) == 6
    admin.close()
    wrong.close()


def test_rate_limit_refusals_are_counted(serve: list[ServeProcess], tmp_path: Path) -> None:
    server = start(serve, tmp_path / "data", "--rate-limit-per-second", "2")
    job = new_job(server)
    admin = connect(server.url, credentials_file=server.admin_credentials())
    before = scrape(server.url)
    statuses = [admin.request("GET", f"/v2/{server.project()}/training-jobs/{job}").status_code for _ in range(6)]
    after = scrape(server.url)
    assert statuses.count(429) >= 1 and set(statuses) == {200, 429}
    assert delta(before, after, "jobtail_limit_refusals_total", limit="requests") == statuses.count(429)
    assert requests(before, after, "ShowTrainingJobDetails", 429) == statuses.count(429)
    admin.close()


def test_two_workers_report_one_sum_and_start_from_an_emptied_directory(serve: list[ServeProcess],
                                                                        tmp_path: Path) -> None:
    stale = tmp_path / "data" / "metrics"
    stale.mkdir(parents=True)
    (stale / "counter_999999.db").write_bytes(b"left by an earlier run")
    server = start(serve, tmp_path / "data", "--workers", "2")
    assert not (stale / "counter_999999.db").exists()
    before = scrape(server.url)
    for _ in range(40):  # over fresh connections: the kernel spreads them over both workers
        assert httpx.get(server.url + "/healthz").status_code == 200
    after = scrape(server.url)
    again = scrape(server.url)  # whichever worker answers, the same sums
    assert requests(before, after, "Health", 200) == 40
    assert requests(after, again, "Health", 200) == 0
    assert requests(after, again, "Metrics", 200) == 1
    writers = {p.stem.rsplit("_", 1)[1] for p in stale.glob("histogram_*.db")}
    assert len(writers) == 2, f"one worker answered every request: {writers}"


def test_who_may_read_metrics(serve: list[ServeProcess], tmp_path: Path) -> None:
    server = start(serve, tmp_path / "data")
    admin = connect(server.url, credentials_file=server.admin_credentials())
    viewer = credential(server, "viewer")
    forwarded = {"X-Forwarded-For": "203.0.113.9"}  # as a proxy on this host would send it
    assert httpx.get(server.url + "/metrics").status_code == 200  # loopback, nobody in between
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        refused = httpx.get(server.url + "/metrics", headers={header: "for=203.0.113.9"})
        assert refused.status_code == 401
        assert refused.json()["error_code"] == "APIGW.0301"
        assert "jobtail_" not in refused.text
    assert admin.request("GET", "/metrics", headers=forwarded).status_code == 200
    assert viewer.request("GET", "/metrics", headers=forwarded).status_code == 403
    no_project = admin.request("GET", "/metrics", headers={**forwarded, "X-Project-Id": ""})
    assert no_project.status_code == 403
    admin.close()
    viewer.close()
    server.stop()

    strict = start(serve, tmp_path / "data", "--metrics-access", "admin")
    admin = connect(strict.url, credentials_file=strict.admin_credentials())
    assert httpx.get(strict.url + "/metrics").status_code == 401
    assert admin.request("GET", "/metrics").status_code == 200
    assert parse(admin.request("GET", "/metrics").text)
    admin.close()
    strict.stop()

    open_ = start(serve, tmp_path / "data", "--metrics-access", "open")
    assert httpx.get(open_.url + "/metrics", headers=forwarded).status_code == 200
