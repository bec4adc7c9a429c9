"""What a token may learn about itself (`GET /v3/auth/projects`) and ending it (`DELETE /v3/auth/tokens`)."""

from __future__ import annotations

import httpx
import pytest
from support.identity import SecureServer
from support.live import LiveServer

from jobtail.auth import manage, roles

IAM = "Incorrect IAM authentication information: "


def projects(secure: SecureServer, token: str | None) -> httpx.Response:
    headers = {} if token is None else {"X-Auth-Token": token}
    return httpx.get(secure.url + "/v3/auth/projects", headers=headers, timeout=30)


def test_an_unscoped_token_lists_every_project_of_its_user_with_what_it_may_do(secure: SecureServer) -> None:
    other = manage.create_project(secure.identity, "another").id
    token = secure.token("viewer", scoped=False)
    user = next(u.name for u in secure.identity.users() if dict(u.grants).get(secure.project) == "viewer")
    manage.grant(secure.identity, user, other, "developer")
    r = projects(secure, token)
    assert r.status_code == 200
    listed = {p["name"]: p for p in r.json()["projects"]}
    assert set(listed) == {"secure", "another"}
    assert listed["secure"]["id"] == secure.project and listed["secure"]["role"] == "viewer"
    assert set(listed["secure"]["actions"]) == {roles.GET_JOB, roles.LIST_JOBS, roles.GET_LOGS}
    assert roles.DELETE_JOB in listed["another"]["actions"] and listed["another"]["role"] == "developer"
    scoped = secure.token("admin")
    assert [(p["id"], p["role"]) for p in projects(secure, scoped).json()["projects"]] == [(secure.project, "admin")]
    assert set(projects(secure, scoped).json()["projects"][0]["actions"]) == set(roles.ACTIONS)


def test_signing_out_ends_the_token(secure: SecureServer) -> None:
    token = secure.token("viewer", scoped=False)
    preview = f"{secure.url}/v2/{secure.project}/training-jobs/{secure.job_id}"
    assert httpx.get(preview, headers={"X-Auth-Token": token}).status_code == 200
    r = httpx.delete(secure.url + "/v3/auth/tokens", headers={"X-Auth-Token": token, "X-Subject-Token": token})
    assert r.status_code == 204 and not r.content
    assert httpx.get(preview, headers={"X-Auth-Token": token}).json()["error_msg"] == IAM + "decrypt token fail"
    assert projects(secure, token).status_code == 401
    # Without X-Subject-Token the caller's own token ends.
    second = secure.token("viewer")
    assert httpx.delete(secure.url + "/v3/auth/tokens", headers={"X-Auth-Token": second}).status_code == 204
    assert projects(secure, second).status_code == 401


def test_nobody_ends_another_users_token(secure: SecureServer) -> None:
    mine, theirs = secure.token("viewer"), secure.token("developer")
    r = httpx.delete(secure.url + "/v3/auth/tokens", headers={"X-Auth-Token": mine, "X-Subject-Token": theirs})
    assert (r.status_code, r.json()["error_code"]) == (404, "Jobtail.0404")
    assert projects(secure, theirs).status_code == 200
    too_long = httpx.delete(secure.url + "/v3/auth/tokens", headers={"X-Auth-Token": mine, "X-Subject-Token": "x" * 9000})
    assert too_long.status_code == 404


@pytest.mark.parametrize(("token", "message"), [
    (None, "x-auth-token not found"),
    ("not-a-token", "decrypt token fail"),
    ("x" * 9000, "decrypt token fail"),
])
def test_bad_tokens_are_401(secure: SecureServer, token: str | None, message: str) -> None:
    for r in (projects(secure, token),
              httpx.delete(secure.url + "/v3/auth/tokens", headers={} if token is None else {"X-Auth-Token": token})):
        assert (r.status_code, r.json()["error_code"], r.json()["error_msg"]) == (401, "APIGW.0301", IAM + message)


def test_an_expired_token_is_401(secure: SecureServer) -> None:
    r = projects(secure, secure.token("viewer", expires_in=-5))
    assert r.status_code == 401 and "token expires, expires_at: " in r.json()["error_msg"]


def test_without_an_identity_store_there_is_nothing_to_list(live: LiveServer) -> None:
    r = httpx.get(live.url + "/v3/auth/projects", headers={"X-Auth-Token": "t"})
    assert (r.status_code, r.json()["error_code"]) == (404, "APIGW.0101")
