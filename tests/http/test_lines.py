"""ShowTrainingJobLogsFromAom: the SDK pages through a multi-megabyte log both ways."""

from __future__ import annotations

import random
import re

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkmodelarts.v1 import ShowTrainingJobLogsFromAomRequest
from reference import reference_lines
from support.engine import new_job
from support.live import LiveServer
from support.sdk import PROJECT, sdk_client

from jobtail.core.types import TaskRef


def _big_log(size: int) -> bytes:
    rng = random.Random(5)
    out = bytearray()
    n = 0
    while len(out) < size:
        n += 1
        width = rng.choice([0, 5, 40, 200, 3000])
        out += f"{n:07d} loss={rng.random():.4f} 損失 {'#' * width}\r{'=' * (width // 3)}\n".encode()
    return bytes(out[:size]) + b"tail without newline"


def test_sdk_pages_forwards_and_backwards(live: LiveServer) -> None:
    job_id = new_job(live.store, PROJECT, "aom", node_count=1).id
    ref = TaskRef(PROJECT, job_id, "worker-0")
    log = _big_log(3_000_000)
    for i in range(0, len(log), 700_000):
        live.store.append(ref, log[i : i + 700_000])
    live.store.seal(ref)
    expected = [line.decode("utf-8", "replace") for line in reference_lines(log)]
    client = sdk_client(live.url)

    forwards: list[str] = []
    base = None
    while True:
        page = client.show_training_job_logs_from_aom(ShowTrainingJobLogsFromAomRequest(
            training_job_id=job_id, task_id="worker-0", base_line=base, lines=500, order="asc"))
        if page.lines == 0:
            break
        forwards += page.content.split("\n")
        assert int(page.end_line) - int(page.start_line) + 1 == page.lines
        base = page.end_line
    assert forwards == expected

    backwards: list[str] = []
    base = None
    while True:
        page = client.show_training_job_logs_from_aom(ShowTrainingJobLogsFromAomRequest(
            training_job_id=job_id, task_id="worker-0", base_line=base, lines=333))
        if page.lines == 0:
            assert page.start_line == page.end_line == base
            break
        chunk = page.content.split("\n")
        assert int(page.start_line) - int(page.end_line) + 1 == page.lines == len(chunk)
        backwards += chunk
        base = page.end_line
    assert backwards == expected[::-1]


def test_deep_pages_and_contract_errors(live: LiveServer) -> None:
    job_id = new_job(live.store, PROJECT, "aom-errors", node_count=2).id
    live.store.append(TaskRef(PROJECT, job_id, "worker-0"), b"".join(b"line %d\n" % i for i in range(1, 100_001)))
    path = f"/v2/{PROJECT}/training-jobs/{job_id}/logs/worker-0"
    with live.client() as http:
        r = http.get(path, params={"base_line": "90000", "lines": "3", "order": "asc"}).json()
        assert r == {"start_line": "90001", "end_line": "90003", "lines": 3,
                     "content": "line 90001\nline 90002\nline 90003", "full_size": 1_088_895}
        r = http.get(path, params={"base_line": "2", "lines": "5"}).json()
        assert (r["start_line"], r["end_line"], r["content"]) == ("1", "1", "line 1")
        stamped = http.get(path, params={"lines": "1", "timestamps": "true"}).json()["content"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z line 100000", stamped), stamped
        for query in ({"lines": "0"}, {"lines": "501"}, {"order": "up"}, {"base_line": "-1"},
                      {"base_line": "1e3"}, {"since": "yesterday"}):
            bad = http.get(path, params=query)
            assert (bad.status_code, bad.json()["error_code"]) == (400, "ModelArts.2764"), query
        empty = http.get(f"/v2/{PROJECT}/training-jobs/{job_id}/logs/worker-1")
        assert (empty.status_code, empty.json()["error_code"]) == (400, "ModelArts.2818")
    with pytest.raises(ClientRequestException) as missing:
        sdk_client(live.url).show_training_job_logs_from_aom(ShowTrainingJobLogsFromAomRequest(
            training_job_id="2cd88daa-31a4-40a8-a58f-d186b0e93e4f", task_id="worker-0"))
    assert (missing.value.status_code, missing.value.error_code) == (400, "ModelArts.2775")


def test_a_page_of_sealed_lines_carries_a_weak_etag_and_answers_304(live: LiveServer) -> None:
    """A page wholly in sealed segments never changes (only full_size moves on): W/ ETag and 304;
    a page reaching into the head has none."""
    job_id = new_job(live.store, PROJECT, "sealed-pages").id
    ref = TaskRef(PROJECT, job_id, "worker-0")
    live.store.append(ref, b"".join(b"sealed line %d\n" % i for i in range(1, 101)))
    live.store.seal(ref)
    live.store.append(ref, b"head line 101\n")
    path = f"/v2/{PROJECT}/training-jobs/{job_id}/logs/worker-0"
    with live.client() as http:
        page = http.get(path, params={"base_line": "10", "lines": "20", "order": "asc"})
        etag = page.headers["etag"]
        assert page.status_code == 200 and etag.startswith('W/"') and page.json()["start_line"] == "11"
        again = http.get(path, params={"base_line": "10", "lines": "20", "order": "asc"}, headers={"If-None-Match": etag})
        assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
        live.store.append(ref, b"head line 102\n")  # the log grows: the sealed page stays what it was
        assert http.get(path, params={"base_line": "10", "lines": "20", "order": "asc"},
                        headers={"If-None-Match": etag}).status_code == 304
        stamped = http.get(path, params={"base_line": "10", "lines": "20", "order": "asc", "timestamps": "true"},
                           headers={"If-None-Match": etag})
        assert stamped.status_code == 200 and stamped.headers["etag"] != etag, "timestamps change the body"
        newest = http.get(path)  # the newest lines: in the head, they may change
        assert newest.status_code == 200 and "etag" not in newest.headers


def test_collapse_cr_pages_show_the_final_state_of_each_line(live: LiveServer) -> None:
    job_id = new_job(live.store, PROJECT, "aom-cr", node_count=1).id
    live.store.append(TaskRef(PROJECT, job_id, "worker-0"),
                      b"start\n 10%|#  |\r 50%|## |\r100%|###|\n\x1b[32mok\x1b[0m\x1b[K\ntail\rT")
    path = f"/v2/{PROJECT}/training-jobs/{job_id}/logs/worker-0"
    with live.client() as http:
        raw = http.get(path, params={"order": "asc"}).json()
        shown = http.get(path, params={"order": "asc", "collapse_cr": "true"}).json()
        assert (shown["start_line"], shown["end_line"]) == (raw["start_line"], raw["end_line"]) == ("1", "4")
        assert shown["content"] == "start\n100%|###|\n\x1b[32mok\x1b[0m\nTail"
        assert http.get(path, params={"collapse_cr": "yes"}).json()["error_code"] == "ModelArts.2764"
