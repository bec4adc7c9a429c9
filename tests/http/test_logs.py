"""The preview and append endpoints over real HTTP, including the official Huawei SDK as client."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkmodelarts.v1 import ShowTrainingJobLogsPreviewRequest
from reference import reference_preview
from support.engine import backends_of, new_job
from support.live import LiveServer
from support.sdk import PROJECT, sdk_client

from jobtail.core.types import TaskRef


def logs_path(job_id: str, task: str = "worker-0", project: str = PROJECT) -> str:
    return f"/v2/{project}/training-jobs/{job_id}/tasks/{task}/logs"


@pytest.fixture
def job_id(live: LiveServer) -> str:
    return new_job(live.store, PROJECT, "http-test", node_count=2).id


def stored(live: LiveServer, job_id: str, task: str = "worker-0") -> bytes:
    ref = TaskRef(PROJECT, job_id, task)
    return b"".join(live.store.read(live.store.state(ref), 0, 1 << 62))


def test_sdk_reads_preview(live: LiveServer, job_id: str) -> None:
    log = "step 1 loss 0.9\n損失 0.5 😀\n\x1b[31mred\x1b[0m\r 50%|#####\n".encode()
    with live.client() as http:
        assert http.post(logs_path(job_id), content=log).json() == {"full_size": len(log)}
    response = sdk_client(live.url).show_training_job_logs_preview(
        ShowTrainingJobLogsPreviewRequest(training_job_id=job_id, task_id="worker-0")
    )
    assert response.status_code == 200
    assert (response.content, response.current_size, response.full_size) == (log.decode(), len(log), len(log))


def test_sdk_sees_contract_errors(live: LiveServer, job_id: str) -> None:
    client = sdk_client(live.url)
    cases = [
        ("2cd88daa-31a4-40a8-a58f-d186b0e93e4f", "worker-0", "ModelArts.2775"),
        (job_id, "worker-7", "ModelArts.2788"),
        (job_id, "worker-1", "ModelArts.2818"),
    ]
    for job, task, code in cases:
        with pytest.raises(ClientRequestException) as caught:
            client.show_training_job_logs_preview(ShowTrainingJobLogsPreviewRequest(training_job_id=job, task_id=task))
        assert (caught.value.status_code, caught.value.error_code) == (400, code)
        assert len(caught.value.request_id) == 32


def test_preview_is_the_tail_and_follows_appends(live_factory: Callable[..., LiveServer]) -> None:
    live = live_factory(preview_bytes=100, seal_bytes=300)
    job = new_job(live.store, PROJECT, "tail", node_count=1).id
    log = b""
    with live.client() as http:
        for i in range(40):
            line = f"line {i} é 損失 {'x' * (i % 7)}\n".encode()
            if i % 5 == 0:
                line = line[:-3]  # end mid-character; the next append completes nothing
            r = http.post(logs_path(job), params={"offset": len(log)}, content=line)
            assert r.status_code == 200, r.text
            log += line
            body = http.get(logs_path(job) + "/preview").json()
            content, current, full = reference_preview(log, 100)
            assert body == {"content": content, "current_size": current, "full_size": full}
    deadline = time.monotonic() + 10
    while not backends_of(live.store).logs.segments(live.store.state(TaskRef(PROJECT, job, "worker-0")).log_id):
        assert time.monotonic() < deadline, "a head over seal_bytes was never sealed"
        time.sleep(0.05)


def test_append_is_idempotent_by_offset(live: LiveServer, job_id: str) -> None:
    path = logs_path(job_id)
    with live.client() as http:
        assert http.post(path, content=b"hello ").json() == {"full_size": 6}
        assert http.post(path, params={"offset": 0}, content=b"hello ").json() == {"full_size": 6}
        assert http.post(path, params={"offset": 3}, content=b"lo world").json() == {"full_size": 11}
        assert http.post(path, params={"offset": 6}, content=b"wor").json() == {"full_size": 11}
        for offset, body in [(12, b"gap"), (0, b"HELLO"), (6, b"World!")]:
            r = http.post(path, params={"offset": offset}, content=body)
            assert r.status_code == 409
            assert r.json()["error_code"] == "Jobtail.0409"
            assert r.json()["full_size"] == 11
    assert stored(live, job_id) == b"hello world"


@pytest.mark.parametrize(
    ("query", "body", "status", "code"),
    [
        ({"offset": "-1"}, b"x", 400, "ModelArts.2764"),
        ({"offset": "abc"}, b"x", 400, "ModelArts.2764"),
        ({"offset": "1" * 30}, b"x", 400, "ModelArts.2764"),
        ({"offset": "０"}, b"x", 400, "ModelArts.2764"),  # a fullwidth digit is not an offset
        ({}, b"", 400, "ModelArts.2788"),
    ],
)
def test_append_rejects_bad_input(live: LiveServer, job_id: str, query: dict[str, str], body: bytes,
                                  status: int, code: str) -> None:
    with live.client() as http:
        http.post(logs_path(job_id), content=b"kept")
        r = http.post(logs_path(job_id), params=query, content=body)
    assert (r.status_code, r.json()["error_code"]) == (status, code)
    assert stored(live, job_id) == b"kept"


def test_body_over_limit_is_refused_and_stores_nothing(live_factory: Callable[..., LiveServer]) -> None:
    live = live_factory(max_body_bytes=1000)
    job = new_job(live.store, PROJECT, "limit", node_count=1).id
    with live.client() as http:
        assert http.post(logs_path(job), content=b"x" * 1000).status_code == 200
        r = http.post(logs_path(job), content=b"y" * 1001)
        assert (r.status_code, r.json()["error_code"]) == (413, "APIGW.0201")

        def chunked() -> object:  # no Content-Length: the limit holds while streaming
            for _ in range(20):
                yield b"z" * 100

        r = http.post(logs_path(job), content=chunked())
        assert r.status_code == 413
    assert stored(live, job) == b"x" * 1000


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v2/{p}/training-jobs/{j}/tasks/worker-9/logs/preview", "ModelArts.2788"),
        ("/v2/{p}/training-jobs/2cd88daa-31a4-40a8-a58f-d186b0e93e4f/tasks/worker-0/logs/preview", "ModelArts.2775"),
        ("/v2/other-project/training-jobs/{j}/tasks/worker-0/logs/preview", "ModelArts.2775"),
        ("/v2/" + "a" * 65 + "/training-jobs/{j}/tasks/worker-0/logs/preview", "ModelArts.2788"),
        ("/v2/%7Bproject_id%7D/training-jobs/{j}/tasks/worker-0/logs/preview", "ModelArts.2788"),
        ("/v2/proj_1/training-jobs/{j}/tasks/worker-0/logs/preview", "ModelArts.2788"),
        ("/v2/{p}/training-jobs/" + "a" * 65 + "/tasks/worker-0/logs/preview", "ModelArts.2788"),
        ("/v2/{p}/training-jobs/{j}%00/tasks/worker-0/logs/preview", "ModelArts.2788"),
        ("/v2/{p}/training-jobs/{j}/tasks/worker-0%00/logs/preview", "ModelArts.2788"),
        ("/v2/{p}/training-jobs/{j}/tasks/%FF%FE/logs/preview", "ModelArts.2788"),
        ("/v2/{p}/training-jobs/{j}/tasks/w%C3%B6rker-0/logs/preview", "ModelArts.2788"),
        ("/v2/{p}/training-jobs/{j}/tasks/" + "w" * 65 + "/logs/preview", "ModelArts.2788"),
        ("/v2/{p}/training-jobs/{j}/tasks/worker-1/logs/preview", "ModelArts.2818"),
    ],
)
def test_preview_errors(live: LiveServer, job_id: str, path: str, code: str) -> None:
    with live.client() as http:
        http.post(logs_path(job_id), content=b"a line\n")
        r = http.get(path.replace("{p}", PROJECT).replace("{j}", job_id))
    assert (r.status_code, r.json()["error_code"]) == (400, code)
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_append_to_another_projects_job_changes_nothing(live: LiveServer, job_id: str) -> None:
    with live.client() as http:
        http.post(logs_path(job_id), content=b"mine")
        r = http.post(logs_path(job_id, project="other-project"), content=b"theirs")
    assert (r.status_code, r.json()["error_code"]) == (400, "ModelArts.2775")
    assert stored(live, job_id) == b"mine"


def test_every_response_has_a_request_id(live: LiveServer) -> None:
    with live.client() as http:
        responses = [
            http.get("/healthz"),
            http.get("/openapi.json"),
            http.get("/no/such/route"),
            http.delete("/healthz"),
            http.get(f"/v2/{PROJECT}/training-jobs/x/tasks/worker-0/logs/preview"),
        ]
    assert [r.status_code for r in responses] == [200, 200, 404, 405, 400]
    ids = {r.headers["x-request-id"] for r in responses}
    assert len(ids) == len(responses) and all(len(i) == 32 for i in ids)
    assert responses[2].json()["error_code"] == "APIGW.0101"
    assert responses[3].json()["error_code"] == "ModelArts.2803"


def test_openapi_documents_every_route_with_its_action(live: LiveServer) -> None:
    with live.client() as http:
        doc = http.get("/openapi.json").json()
    operations = {(m.upper(), path): op for path, item in doc["paths"].items() for m, op in item.items()}
    preview = operations[("GET", "/v2/{project_id}/training-jobs/{training_job_id}/tasks/{task_id}/logs/preview")]
    assert preview["operationId"] == "ShowTrainingJobLogsPreview"
    assert preview["x-modelarts-action"] == "modelarts:trainJob:get"
    for (method, path), op in operations.items():
        if path.startswith("/v2/") and op["operationId"] != "DownloadTrainingJobTaskLog":  # the signed link
            assert op["x-modelarts-action"].startswith("modelarts:"), (method, path)
    assert ("GET", "/healthz") in operations


def test_unexpected_errors_are_500_with_request_id(live: LiveServer, job_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    for method in ("state", "answered_preview", "encoded_preview"):  # the event loop's path and the thread's
        monkeypatch.setattr(live.store, method, broken)
    with httpx.Client(base_url=live.url) as http:
        r = http.get(logs_path(job_id) + "/preview")
    assert r.status_code == 500
    assert r.json()["error_code"] == "ModelArts.0010"
    assert "fire" not in r.text
    assert r.headers["x-request-id"] == r.json()["request_id"]


def test_an_unchanged_preview_answers_304_with_no_body(live: LiveServer, job_id: str) -> None:
    """Pollers skip unchanged tails: the preview's ETag, sent back in If-None-Match, gets a 304
    with no body until the log moves; a raw socket shows that no body byte is sent."""
    from support.rawhttp import RawRequest

    path = logs_path(job_id) + "/preview"
    with live.client() as http:
        http.post(logs_path(job_id), content=b"epoch 1\n")
        first = http.get(path)
        etag = first.headers["etag"]
        assert first.status_code == 200 and etag.startswith('"') and first.json()["full_size"] == 8
        again = http.get(path, headers={"If-None-Match": etag})
        assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
        assert http.get(path, headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304, "weak comparison"
        assert http.get(path, headers={"If-None-Match": "*"}).status_code == 304
        assert http.get(path, headers={"If-None-Match": '"stale"'}).status_code == 200

        with RawRequest(live.url, "GET", path, {"Host": "jobtail", "If-None-Match": etag}) as raw:
            answer = raw.start().response_head()
            assert answer.status == 304 and answer.headers["etag"] == etag
            assert answer.headers.get("content-length", "0") == "0" and "transfer-encoding" not in answer.headers
            time.sleep(0.2)
            assert raw._buffer == b"", "no body byte came with the head"
            raw.sock.setblocking(False)
            try:
                assert raw.sock.recv(1) == b"", "no body follows a 304"
            except BlockingIOError:
                pass  # nothing more was sent, and the connection stays open

        http.post(logs_path(job_id), content=b"epoch 2\n")  # the log moved: a new body, a new tag
        moved = http.get(path, headers={"If-None-Match": etag})
        assert moved.status_code == 200 and moved.json()["content"] == "epoch 1\nepoch 2\n"
        assert moved.headers["etag"] != etag
        assert http.get(path, headers={"If-None-Match": moved.headers["etag"]}).status_code == 304
        # an empty log is still "not generated", whatever the client claims to hold
        other = logs_path(job_id, "worker-1") + "/preview"
        assert http.get(other, headers={"If-None-Match": "*"}).json()["error_code"] == "ModelArts.2818"
