"""Keystone-style `POST /v3/auth/tokens` over real HTTP, and using what it issues."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from support.identity import SecureServer
from support.live import LiveServer

from jobtail.auth import manage
from jobtail.auth.schema import tokens

IAM = "Incorrect IAM authentication information: "


def password_body(name: str, password: str, scope: dict[str, Any] | None = None) -> dict[str, Any]:
    auth: dict[str, Any] = {"identity": {"methods": ["password"], "password": {"user": {
        "name": name, "password": password, "domain": {"name": "ignored"}}}}}
    if scope is not None:
        auth["scope"] = scope
    return {"auth": auth}


def issue(secure: SecureServer, body: Any) -> httpx.Response:
    return httpx.post(secure.url + "/v3/auth/tokens", json=body, timeout=30)


@pytest.fixture
def alice(secure: SecureServer) -> str:
    manage.create_user(secure.identity, "alice", "correct horse")
    manage.grant(secure.identity, "alice", secure.project, "developer")
    return "alice"


def preview(secure: SecureServer, token: str, project: str | None = None) -> httpx.Response:
    project = project or secure.project
    return httpx.get(f"{secure.url}/v2/{project}/training-jobs/{secure.job_id}/tasks/worker-0/logs/preview",
                     headers={"X-Auth-Token": token}, timeout=30)


@pytest.mark.parametrize("scope_by", ["id", "name", "none", "domain"])
def test_password_login_issues_a_working_token(secure: SecureServer, alice: str, scope_by: str) -> None:
    scope = {"id": {"project": {"id": secure.project}}, "name": {"project": {"name": "secure"}},
             "none": None, "domain": {"domain": {"name": "whatever"}}}[scope_by]
    before = time.time()
    r = issue(secure, password_body(alice, "correct horse", scope))
    assert r.status_code == 201, r.text
    token = r.headers["x-subject-token"]
    body = r.json()["token"]
    expires = datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    assert before + 24 * 3600 - 5 < expires < time.time() + 24 * 3600 + 5
    assert body["methods"] == ["password"] and body["user"]["name"] == "alice"
    if scope_by in ("id", "name"):
        assert body["project"] == {"id": secure.project, "name": "secure"}
        assert body["roles"] == [{"id": "developer", "name": "developer"}]
    else:
        assert "project" not in body
    secure.live.store.append(_ref(secure), b"hi\n")
    assert preview(secure, token).json()["content"] == "hi\n"


def _ref(secure: SecureServer) -> Any:
    from jobtail.core.types import TaskRef

    return TaskRef(secure.project, secure.job_id, "worker-0")


def test_tokens_are_stored_only_as_digests(secure: SecureServer, alice: str) -> None:
    token = issue(secure, password_body(alice, "correct horse")).headers["x-subject-token"]
    with secure.identity._reader.connect() as conn:  # what an attacker with the database would see
        rows = conn.execute(select(tokens)).all()
    assert [row.digest for row in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    assert all(token not in str(tuple(row)) for row in rows)


def test_wrong_passwords_and_unknown_users_look_alike(secure: SecureServer, alice: str) -> None:
    for name, password in [(alice, "wrong"), ("nobody", "correct horse"), ("bad\x00name", "x"), ("", "x")]:
        r = issue(secure, password_body(name, password))
        assert (r.status_code, r.json()["error_code"], r.json()["error_msg"]) == (
            401, "APIGW.0301", IAM + "the username or password is wrong")
        assert r.json()["request_id"] == r.headers["x-request-id"]


def test_no_role_in_the_scope_is_401(secure: SecureServer, alice: str) -> None:
    other = manage.create_project(secure.identity, "elsewhere").id
    for scope in ({"project": {"id": other}}, {"project": {"name": "elsewhere"}}, {"project": {"id": "missing"}},
                  {"project": {"id": "bad id\x00"}}):
        r = issue(secure, password_body(alice, "correct horse", scope))
        assert r.status_code == 401, r.text


def test_five_wrong_passwords_lock_the_user_for_that_address(secure: SecureServer, alice: str) -> None:
    for _ in range(5):
        assert issue(secure, password_body(alice, "wrong")).status_code == 401
    r = issue(secure, password_body(alice, "correct horse"))
    assert r.status_code == 401 and "locked" in r.json()["error_msg"]


def test_a_new_password_ends_old_tokens(secure: SecureServer, alice: str) -> None:
    token = issue(secure, password_body(alice, "correct horse")).headers["x-subject-token"]
    assert preview(secure, token).status_code == 400  # authenticated (the task has no log yet)
    from jobtail.auth.passwords import hash_password

    secure.identity.set_password(alice, hash_password("battery staple"))
    assert preview(secure, token).json()["error_msg"] == IAM + "decrypt token fail"
    assert issue(secure, password_body(alice, "battery staple")).status_code == 201


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"not json", 400, "ModelArts.2787"),
        (b"[]", 400, "ModelArts.2788"),
        (b'{"auth": {"identity": {"methods": ["token"]}}}', 400, "ModelArts.2788"),
        (b'{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": 1}}}}}', 400, "ModelArts.2788"),
        (b'{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "a"}}}}}', 400, "ModelArts.2788"),
        (b'{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "a", "password": "b"}}},'
         b' "scope": {"project": {}}}}', 400, "ModelArts.2788"),
        (b'{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "a", "password": "b"}}},'
         b' "scope": "x"}}', 400, "ModelArts.2788"),
        (b"\xff\xfe", 400, "ModelArts.2787"),
    ],
)
def test_malformed_requests(secure: SecureServer, body: bytes, status: int, code: str) -> None:
    r = httpx.post(secure.url + "/v3/auth/tokens", content=body, headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()["error_code"]) == (status, code)


def test_without_an_identity_store_there_are_no_tokens(live: LiveServer) -> None:
    r = httpx.post(live.url + "/v3/auth/tokens", json=password_body("a", "b"))
    assert (r.status_code, r.json()["error_code"]) == (404, "APIGW.0101")
