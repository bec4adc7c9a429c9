"""The IdentityGuard over real HTTP: the official Huawei SDK with AK/SK, raw signed requests, tokens."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_handler import HttpHandler
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkmodelarts.v1 import (
    CreateTrainingJobRequest,
    Filter,
    Job,
    JobActionType,
    JobAlgorithm,
    JobMetadata,
    JobSearches,
    ListTrainingJobEventsRequest,
    ListTrainingJobsRequest,
    ShowTrainingJobLogsPreviewRequest,
    Spec,
    SpecResource,
    StopTrainingJobRequest,
)
from support.engine import new_job
from support.identity import Key, SecureServer
from support.rawhttp import RawRequest

from jobtail.auth import manage
from jobtail.auth.signing import SDK_DATE_FORMAT, sign_request
from jobtail.auth.store import IdentityStore

IAM = "Incorrect IAM authentication information: "


def preview_path(project: str, job: str, task: str = "worker-0") -> str:
    return f"/v2/{project}/training-jobs/{job}/tasks/{task}/logs/preview"


def logs_path(project: str, job: str, task: str = "worker-0") -> str:
    return f"/v2/{project}/training-jobs/{job}/tasks/{task}/logs"


def preview(job: str) -> ShowTrainingJobLogsPreviewRequest:
    return ShowTrainingJobLogsPreviewRequest(training_job_id=job, task_id="worker-0")


def sdk_error(call: Callable[[], object]) -> ClientRequestException:
    with pytest.raises(ClientRequestException) as caught:
        call()
    assert len(caught.value.request_id) == 32
    return caught.value


def append(secure: SecureServer, data: bytes, job: str | None = None, project: str | None = None) -> None:
    project = project or secure.project
    with secure.client(secure.key("ingest", project=project), project=project) as client:
        r = client.request("POST", logs_path(project, job or secure.job_id), content=data,
                           headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text


def other_project(secure: SecureServer) -> tuple[str, str]:
    """A second project with a job of its own: (project id, job id)."""
    project = manage.create_project(secure.identity, f"other-{time.monotonic_ns()}").id
    return project, new_job(secure.live.store, project, "theirs", node_count=1).id


def signed(secure: SecureServer, key: Key, method: str, target: str, body: bytes = b"",
           content_type: str = "application/json", now: datetime | None = None,
           extra: dict[str, str] | None = None) -> dict[str, str]:
    """Headers for a request signed like the SDK signs it (Host, Content-Type, X-Project-Id, User-Agent)."""
    host = secure.url.removeprefix("http://")
    headers = {"Host": host, "Content-Type": content_type, "X-Project-Id": key.project_id,
               "User-Agent": "test-agent", **(extra or {})}
    return {**headers, **sign_request(method, target, headers, body, key.access_key, key.secret_key, now=now)}


def send(secure: SecureServer, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> httpx.Response:
    with httpx.Client(base_url=secure.url, timeout=30) as http:
        return http.request(method, target, headers=headers, content=body)


def error(r: httpx.Response) -> tuple[int, str, str]:
    body = r.json()
    assert body["request_id"] == r.headers["x-request-id"]
    return r.status_code, body["error_code"], body["error_msg"]


# -------------------------------------------------------------------- the SDK with AK/SK


def test_sdk_reads_the_preview(secure: SecureServer) -> None:
    append(secure, "epoch 1 loss 0.5\n損失\n".encode())
    for role in ("viewer", "developer", "admin"):
        response = secure.sdk(secure.key(role)).show_training_job_logs_preview(preview(secure.job_id))
        assert response.content == "epoch 1 loss 0.5\n損失\n"
    user = secure.user_key({secure.project: "viewer"})
    assert secure.sdk(user).show_training_job_logs_preview(preview(secure.job_id)).full_size == 24


def test_sdk_reports_credential_failures(secure: SecureServer) -> None:
    append(secure, b"x\n")
    theirs, their_job = other_project(secure)
    key = secure.key("viewer")
    revoked = secure.key("viewer")
    assert secure.identity.revoke_credential(revoked.access_key)
    user = secure.user_key({secure.project: "viewer"})
    cases: list[tuple[Any, str, int, str, str]] = [
        (secure.sdk(Key(key.access_key, "WRONG" + key.secret_key[5:], key.project_id)), secure.job_id,
         401, "APIGW.0301", IAM + "verify aksk signature fail"),
        (secure.sdk(Key("AKNOTKNOWN0000000000", key.secret_key, key.project_id)), secure.job_id,
         401, "APIGW.0301", IAM + "Get secretKey failed,ak:******,err:ak not exist"),
        (secure.sdk(revoked), secure.job_id, 401, "APIGW.0301", IAM + "Get secretKey failed,ak:******,err:ak not exist"),
        (secure.sdk(key), their_job, 400, "ModelArts.2775", f"Training job (ID: {their_job}) not found."),
        (secure.sdk(key, project=theirs), their_job, 404, "ModelArts.2786",
         f"The project ID ({theirs}) in the request does not match that({secure.project}) in the credential."),
        (secure.sdk(user, project=theirs), their_job, 403, "ModelArts.0108",
         "You are not authorized to perform the (modelarts:trainJob:get) operation."),
        (secure.sdk(secure.key("ingest")), secure.job_id, 403, "ModelArts.0108",
         "You are not authorized to perform the (modelarts:trainJob:get) operation."),
    ]
    for client, job, status, code, message in cases:
        exc = sdk_error(lambda: client.show_training_job_logs_preview(preview(job)))  # noqa: B023
        assert (exc.status_code, exc.error_code, exc.error_msg) == (status, code, message)


def tampering(change: Callable[[SdkRequest], None]) -> HttpHandler:
    """An SDK HTTP handler that alters each request after the SDK signed it."""

    def handler(request: SdkRequest, **_: object) -> None:
        change(request)

    return HttpHandler().add_request_handler(handler)


def test_sdk_requests_altered_after_signing_are_refused(secure: SecureServer) -> None:
    other_job = new_job(secure.live.store, secure.project, "other", node_count=1).id
    key = secure.key("developer")

    def client(change: Callable[[SdkRequest], None] | None = None) -> Any:
        return secure.sdk(key, handler=None if change is None else tampering(change))

    def other_path(r: SdkRequest) -> None:
        r.uri = r.uri.replace(secure.job_id, other_job)

    def other_query(r: SdkRequest) -> None:
        r.uri = r.uri.replace("limit=10", "limit=11")

    def other_body(r: SdkRequest) -> None:
        r.body = (r.body.replace("terminate", "Terminate") if isinstance(r.body, str)
                  else r.body.replace(b"terminate", b"Terminate"))

    def old_date(r: SdkRequest) -> None:
        r.header_params["X-Sdk-Date"] = (datetime.now(UTC) - timedelta(minutes=16)).strftime(SDK_DATE_FORMAT)

    events = ListTrainingJobEventsRequest(training_job_id=secure.job_id, limit=10)
    stop = StopTrainingJobRequest(training_job_id=secure.job_id, body=JobActionType(action_type="terminate"))
    append(secure, b"line\n")
    assert client().show_training_job_logs_preview(preview(secure.job_id)).content == "line\n"
    assert client(lambda r: None).list_training_job_events(events).status_code == 200
    failures = [
        (lambda: client(other_path).show_training_job_logs_preview(preview(secure.job_id)), "verify aksk signature fail"),
        (lambda: client(other_query).list_training_job_events(events), "verify aksk signature fail"),
        (lambda: client(other_body).stop_training_job(stop), "verify aksk signature fail"),
        (lambda: client(old_date).show_training_job_logs_preview(preview(secure.job_id)),
         "calc ak sk signature fail:signature expired"),
    ]
    for call, reason in failures:
        exc = sdk_error(call)
        assert (exc.status_code, exc.error_code, exc.error_msg) == (401, "APIGW.0301", IAM + reason)


# -------------------------------------------------------------------- raw signed requests


def test_signed_requests_and_the_parts_they_cover(secure: SecureServer) -> None:
    key = secure.key("developer")
    path = logs_path(secure.project, secure.job_id)
    target = path + "?offset=0"
    body = b"hello\n"
    ok = signed(secure, key, "POST", target, body, "application/octet-stream")
    assert ok["X-Sdk-Content-Sha256"] == "UNSIGNED-PAYLOAD"
    assert send(secure, "POST", target, ok, body).json() == {"full_size": 6}
    assert send(secure, "POST", path + "?offset=1", ok, body).status_code == 401  # query altered
    hashed = signed(secure, key, "POST", path + "?offset=6", b"more\n", "application/json")
    assert send(secure, "POST", path + "?offset=6", hashed, b"MORE\n").status_code == 401  # signed body altered
    assert send(secure, "POST", path + "?offset=6", hashed, b"more\n").status_code == 200
    for minutes, status in [(14, 200), (-14, 200), (16, 401), (-16, 401)]:
        when = datetime.now(UTC) - timedelta(minutes=minutes)
        r = send(secure, "GET", preview_path(secure.project, secure.job_id),
                 signed(secure, key, "GET", preview_path(secure.project, secure.job_id), now=when))
        assert r.status_code == status, (minutes, r.text)
        if status == 401:
            assert error(r) == (401, "APIGW.0301", IAM + "calc ak sk signature fail:signature expired")


def test_x_project_id_must_match_the_path(secure: SecureServer) -> None:
    user = secure.user_key({secure.project: "viewer"})
    target = preview_path(secure.project, secure.job_id)
    headers = signed(secure, Key(user.access_key, user.secret_key, "someone-else"), "GET", target)
    assert error(send(secure, "GET", target, headers)) == (
        404, "ModelArts.2786",
        f"The project ID ({secure.project}) in the request does not match that(someone-else) in the X-Project-Id header.",
    )


def test_five_bad_signatures_lock_the_key_out_for_that_address_only(secure: SecureServer) -> None:
    key = secure.key("viewer")
    target = preview_path(secure.project, secure.job_id)
    wrong = Key(key.access_key, "X" * 40, key.project_id)
    for _ in range(5):
        assert error(send(secure, "GET", target, signed(secure, wrong, "GET", target)))[2] == IAM + "verify aksk signature fail"
    locked = error(send(secure, "GET", target, signed(secure, key, "GET", target)))
    assert locked == (401, "APIGW.0301", "AK access failed to reach the limit,forbidden.")
    # Another address is not affected; the guard's lockout is keyed by (AK, client address).
    lockout = secure.guard.authenticator.lockout
    assert lockout.locked(key.access_key, "127.0.0.1") and not lockout.locked(key.access_key, "10.0.0.9")
    other = secure.key("viewer")  # nor is another key from the same address
    assert send(secure, "GET", target, signed(secure, other, "GET", target)).status_code == 400  # no log yet: 2818


def test_a_success_resets_the_failure_count(secure: SecureServer) -> None:
    key = secure.key("viewer")
    target = preview_path(secure.project, secure.job_id)
    wrong = Key(key.access_key, "X" * 40, key.project_id)
    for _ in range(3):
        for _ in range(4):
            assert send(secure, "GET", target, signed(secure, wrong, "GET", target)).status_code == 401
        assert send(secure, "GET", target, signed(secure, key, "GET", target)).status_code == 400  # 2818: authenticated


# -------------------------------------------------------------------- tokens


def test_tokens_work_and_fail_like_signatures(secure: SecureServer, identity: IdentityStore) -> None:
    append(secure, b"tok\n")
    theirs, their_job = other_project(secure)
    target = preview_path(secure.project, secure.job_id)
    viewer = secure.token("viewer")
    with secure.client(token=viewer) as client:
        assert client.request("GET", target).json()["content"] == "tok\n"
        assert error(client.request("GET", preview_path(secure.project, their_job)))[:2] == (400, "ModelArts.2775")
        assert error(client.request("POST", logs_path(secure.project, secure.job_id), content=b"x")) == (
            403, "ModelArts.0108", "You are not authorized to perform the (modelarts:trainJob:appendLogs) operation.")
    with secure.client(token=viewer, project=theirs) as client:
        assert error(client.request("GET", preview_path(theirs, their_job))) == (
            404, "ModelArts.2786",
            f"The project ID ({theirs}) in the request does not match that({secure.project}) in the token.")
    unscoped = secure.token("viewer", scoped=False)
    with secure.client(token=unscoped, project=theirs) as client:  # acts where its user has a role: not there
        assert error(client.request("GET", preview_path(theirs, their_job)))[:2] == (403, "ModelArts.0108")
    expired = secure.token("viewer", expires_in=-5)
    with secure.client(token=expired) as client:
        status, code, message = error(client.request("GET", target))
    assert (status, code) == (401, "APIGW.0301")
    assert message.startswith(IAM + "token expires, expires_at: ") and message.endswith("Z")
    for garbage in ["nope", "jt_" + "A" * 43, "x" * 9000, "ü-token"]:
        r = httpx.get(secure.url + target, headers={"X-Auth-Token": garbage.encode()})
        assert error(r) == (401, "APIGW.0301", IAM + "decrypt token fail")


def test_deleting_the_user_ends_its_tokens_and_credentials_at_once(secure: SecureServer) -> None:
    append(secure, b"x\n")
    target = preview_path(secure.project, secure.job_id)
    manage.create_user(secure.identity, "leaver")
    manage.grant(secure.identity, "leaver", secure.project, "viewer")
    key = manage.create_credential(secure.identity, secure.master_key, user_name="leaver")
    user = Key(key.credential.access_key, key.secret_key, secure.project)
    assert send(secure, "GET", target, signed(secure, user, "GET", target)).status_code == 200
    assert secure.identity.revoke_grant("leaver", secure.project)
    assert error(send(secure, "GET", target, signed(secure, user, "GET", target)))[:2] == (403, "ModelArts.0108")
    assert secure.identity.delete_user("leaver")
    assert error(send(secure, "GET", target, signed(secure, user, "GET", target)))[2].endswith("ak not exist")


def test_a_job_bound_credential_touches_only_its_job(secure: SecureServer) -> None:
    other_job = new_job(secure.live.store, secure.project, "other", node_count=1).id
    bound = secure.key("ingest", job=secure.job_id)
    with secure.client(bound) as client:
        ok = client.request("POST", logs_path(secure.project, secure.job_id), content=b"a\n",
                            headers={"Content-Type": "application/octet-stream"})
        assert ok.status_code == 200
        refused = client.request("POST", logs_path(secure.project, other_job), content=b"a\n",
                                 headers={"Content-Type": "application/octet-stream"})
        assert error(refused)[:2] == (403, "ModelArts.0108")


# -------------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        ("", "decrypt token fail"),
        ("Bearer abc", "decrypt token fail"),
        ("SDK-HMAC-SHA256", "verify aksk signature fail"),
        ("SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature=zz", "verify aksk signature fail"),
        ("SDK-HMAC-SM3 Access=AK, SignedHeaders=host;x-sdk-date, Signature=" + "0" * 64, "verify aksk signature fail"),
        ("V11-HMAC-SHA256 Credential=AK/20240101/r/s/sdk_request, SignedHeaders=host, Signature=" + "0" * 64,
         "verify aksk signature fail"),
        ("SDK-HMAC-SHA256 Access=A\u00e9K, SignedHeaders=host;x-sdk-date, Signature=" + "0" * 64,
         "Get secretKey failed,ak:******,err:ak not exist"),
        ("SDK-HMAC-SHA256 Access=" + "A" * 65 + ", SignedHeaders=host;x-sdk-date, Signature=" + "0" * 64,
         "Get secretKey failed,ak:******,err:ak not exist"),
        ("SDK-HMAC-SHA256 Access=AK, SignedHeaders=" + "h;" * 3000 + "host, Signature=" + "0" * 64,
         "verify aksk signature fail"),
    ],
)
def test_malformed_authorization_is_401(secure: SecureServer, authorization: str, reason: str) -> None:
    r = httpx.get(secure.url + preview_path(secure.project, secure.job_id),
                  headers={"Authorization": authorization.encode(), "X-Sdk-Date": "20240101T000000Z"})
    assert error(r) == (401, "APIGW.0301", IAM + reason)


def test_signatures_missing_the_date_or_host_are_401(secure: SecureServer) -> None:
    key = secure.key("viewer")
    target = preview_path(secure.project, secure.job_id)
    good = signed(secure, key, "GET", target)
    no_date = {k: v for k, v in good.items() if k != "X-Sdk-Date"}
    unsigned_host = {**good, "Authorization": good["Authorization"].replace("host;", "")}
    bad_date = {**good, "X-Sdk-Date": "2024-01-01T00:00:00Z"}
    for headers in (no_date, unsigned_host, bad_date):
        assert error(send(secure, "GET", target, headers)) == (401, "APIGW.0301", IAM + "verify aksk signature fail")


def test_no_credentials_and_hostile_bytes_never_500(secure: SecureServer) -> None:
    target = preview_path(secure.project, secure.job_id)
    assert error(httpx.get(secure.url + target)) == (401, "APIGW.0301", IAM + "x-auth-token not found")
    key = secure.key("viewer")
    good = signed(secure, key, "GET", target)
    hostile: list[dict[str, Any]] = [
        {**good, "User-Agent": b"caf\xe9 \xff"},  # non-UTF-8 bytes in a signed header
        {**good, "X-Project-Id": "é".encode()},
        {"X-Auth-Token": "a" * 60_000},
        {**good, "Authorization": good["Authorization"] + "x" * 60_000},
    ]
    with httpx.Client(base_url=secure.url) as http:
        for headers in hostile:
            r = http.get(target, headers=headers)
            assert 400 <= r.status_code < 500, r.text
        raw = httpx.Request("GET", secure.url + target, headers=[(b"X-Auth-Token", b"a\x00b")])
        try:
            assert http.send(raw).status_code < 500
        except httpx.LocalProtocolError:  # the client refuses to send a NUL: nothing reached the server
            pass


def test_the_same_signature_works_through_the_asgi_app_directly(secure: SecureServer) -> None:
    """Raw-path handling does not depend on the server: httpx's ASGI transport gives raw paths too."""
    import asyncio

    from support.live import services_for

    from jobtail.http.app import create_app

    key = secure.key("viewer")
    target = preview_path(secure.project, secure.job_id) + "?a=%20b&c=d+e"
    app = create_app(secure.live.settings, services_for(secure.live.engine, secure.guard.authenticator),
                     guard=secure.guard)

    good = signed(secure, key, "GET", target)
    hostile = [  # bytes no HTTP server would pass on; the app must still answer 401, never 500
        {"X-Auth-Token": b"a\x00b"},
        {"Authorization": b"SDK-HMAC-SHA256 Access=A\x00K, SignedHeaders=host;x-sdk-date, Signature=" + b"0" * 64},
        {**good, "X-Sdk-Date": b"2024\x00"},
        {**good, "Host": b"\xff\xfe"},
        {**good, "Authorization": good["Authorization"].replace("Access=", "Access=\u00e9").encode()},
    ]

    async def call() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=secure.url) as http:
                responses = [await http.get(target, headers=good)]
                for headers in hostile:
                    responses.append(await http.get(target, headers=headers))
                return responses

    first, *rest = asyncio.run(call())
    assert error(first)[:2] == (400, "ModelArts.2818")  # authenticated; the task simply has no log yet
    assert [error(r)[:2] for r in rest] == [(401, "APIGW.0301")] * len(hostile)


def test_the_principal_says_who_and_what(secure: SecureServer) -> None:
    """What handlers see in `request.state.principal` (never a secret)."""
    import asyncio

    from starlette.requests import Request

    def principal(headers: dict[str, str], target: str) -> Any:
        path = target.partition("?")[0]
        parts = path.split("/")
        scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
                 "client": ("127.0.0.1", 1), "path_params": {"project_id": parts[2], "training_job_id": parts[4]}}
        return asyncio.run(secure.guard.authorize(Request(scope), "modelarts:trainJob:get", parts[2]))

    target = preview_path(secure.project, secure.job_id)
    bound = secure.key("viewer", job=secure.job_id)
    p = principal(signed(secure, bound, "GET", target), target)
    assert (p.name, p.kind, p.project_id, p.roles, p.job_id) == (
        f"credential {bound.access_key}", "project", secure.project, frozenset({"viewer"}), secure.job_id)
    manage.create_user(secure.identity, "erin")
    manage.grant(secure.identity, "erin", secure.project, "admin")
    issued = manage.create_credential(secure.identity, secure.master_key, user_name="erin")
    erin = Key(issued.credential.access_key, issued.secret_key, secure.project)
    p = principal(signed(secure, erin, "GET", target), target)
    assert (p.name, p.kind, p.project_id, p.roles, p.job_id) == ("user erin", "user", None, frozenset({"admin"}), None)
    token = secure.token("developer")
    p = principal({"X-Auth-Token": token}, target)
    assert (p.kind, p.project_id, p.roles) == ("token", secure.project, frozenset({"developer"}))
    assert p.name.startswith("user tuser") and token not in repr(p)


# -------------------------------------------------------------------- bodies: credentials first


def test_bad_credentials_are_refused_before_the_body_is_sent(secure: SecureServer) -> None:
    """A request head with a 1 MB body announced and none sent: bad credentials get their answer
    at once (before, the server waited for the whole body, then refused it)."""
    key = secure.key("developer")
    append = logs_path(secure.project, secure.job_id) + "?offset=0"
    searches = f"/v2/{secure.project}/training-job-searches"
    body = b"{}".ljust(1_000_000)
    unknown = Key("AKNOTKNOWN0000000000", key.secret_key, key.project_id)
    wrong = Key(key.access_key, "X" * 40, key.project_id)
    old = datetime.now(UTC) - timedelta(minutes=16)
    cases: list[tuple[str, dict[str, str], tuple[int, str, str]]] = [
        (append, {"Host": "x"}, (401, "APIGW.0301", IAM + "x-auth-token not found")),
        (append, {"Host": "x", "X-Auth-Token": "nope"}, (401, "APIGW.0301", IAM + "decrypt token fail")),
        (append, {"Host": "x", "X-Auth-Token": secure.token("viewer")},
         (403, "ModelArts.0108", "You are not authorized to perform the (modelarts:trainJob:appendLogs) operation.")),
        (append, signed(secure, unknown, "POST", append, body, "application/octet-stream"),
         (401, "APIGW.0301", IAM + "Get secretKey failed,ak:******,err:ak not exist")),
        (append, signed(secure, wrong, "POST", append, body, "application/octet-stream"),  # UNSIGNED-PAYLOAD
         (401, "APIGW.0301", IAM + "verify aksk signature fail")),
        (append, signed(secure, secure.key("viewer"), "POST", append, body, "application/octet-stream"),
         (403, "ModelArts.0108", "You are not authorized to perform the (modelarts:trainJob:appendLogs) operation.")),
        (searches, signed(secure, unknown, "POST", searches, body),  # a signed JSON body
         (401, "APIGW.0301", IAM + "Get secretKey failed,ak:******,err:ak not exist")),
        (searches, signed(secure, key, "POST", searches, body, now=old),
         (401, "APIGW.0301", IAM + "calc ak sk signature fail:signature expired")),
    ]
    for target, headers, expected in cases:
        with RawRequest(secure.url, "POST", target, {**headers, "Content-Length": str(len(body))}, timeout=10) as raw:
            answer = raw.start().response()  # nothing of the body sent
        found = orjson.loads(answer.body)
        assert (answer.status, found["error_code"], found["error_msg"]) == expected, target


def test_a_signed_body_is_hashed_as_it_arrives_and_checked_after(secure: SecureServer) -> None:
    key = secure.key("developer")
    searches = f"/v2/{secure.project}/training-job-searches"
    body = orjson.dumps({"limit": 10}).ljust(300_000)
    good = signed(secure, key, "POST", searches, body)
    assert "X-Sdk-Content-Sha256" not in good  # the SDK signs a JSON body's SHA-256
    with RawRequest(secure.url, "POST", searches, {**good, "Content-Length": str(len(body))}) as raw:
        raw.start()
        for at in range(0, len(body), 65_536):  # in pieces, as a slow client sends it
            assert raw.send(body[at:at + 65_536])
            time.sleep(0.01)
        answer = raw.response()
    assert (answer.status, orjson.loads(answer.body)["count"]) == (200, 1)
    tampered = body.replace(b"10", b"11")
    assert error(send(secure, "POST", searches, good, tampered)) == (401, "APIGW.0301", IAM + "verify aksk signature fail")
    with httpx.Client(base_url=secure.url) as http:  # chunked: no Content-Length, length unknown before the body
        chunked = http.post(searches, headers=good, content=iter([body[:1000], body[1000:]]))
        assert "content-length" not in chunked.request.headers
        assert chunked.status_code == 200, chunked.text


def test_bad_signatures_before_and_after_the_body_share_one_lockout(secure: SecureServer) -> None:
    key = secure.key("developer")
    wrong = Key(key.access_key, "X" * 40, key.project_id)
    append = logs_path(secure.project, secure.job_id) + "?offset=0"
    searches = f"/v2/{secure.project}/training-job-searches"
    for _ in range(3):  # refused before the body: UNSIGNED-PAYLOAD
        r = send(secure, "POST", append, signed(secure, wrong, "POST", append, b"x\n", "application/octet-stream"), b"x\n")
        assert error(r)[2] == IAM + "verify aksk signature fail"
    for _ in range(2):  # refused after it: a signed body
        r = send(secure, "POST", searches, signed(secure, wrong, "POST", searches, b"{}"), b"{}")
        assert error(r)[2] == IAM + "verify aksk signature fail"
    locked = send(secure, "POST", searches, signed(secure, key, "POST", searches, b"{}"), b"{}")
    assert error(locked) == (401, "APIGW.0301", "AK access failed to reach the limit,forbidden.")


def test_the_sdk_signs_job_bodies_that_verify(secure: SecureServer) -> None:
    """Create, search and stop through the IdentityGuard: bodies the SDK signs, checked after they arrive."""
    client = secure.sdk(secure.key("developer"))
    job = Job(kind="job", metadata=JobMetadata(name="signed-body", description="ü " * 2000),
              algorithm=JobAlgorithm(command="python train.py", environments={"LR": "0.1"}),
              spec=Spec(resource=SpecResource(flavor_id="modelarts.vm.cpu.8u", node_count=1)))
    created = client.create_training_job(CreateTrainingJobRequest(body=job))
    assert created.status_code == 201
    found = client.list_training_jobs(ListTrainingJobsRequest(body=JobSearches(
        filters=[Filter(key="name", operator="like", value=["signed-body"])])))
    assert [item.metadata.id for item in found.items] == [created.metadata.id]
    stopped = client.stop_training_job(StopTrainingJobRequest(
        training_job_id=created.metadata.id, body=JobActionType(action_type="terminate")))
    assert stopped.status_code == 202
    client.get_http_client().close()
