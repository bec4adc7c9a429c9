"""Every route in /openapi.json is guarded: 401 without credentials, 403 for a role lacking its action.

A route added later without an action (and not listed in PUBLIC) fails here, as does one whose
action no role knows about.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from support.identity import SecureServer

from jobtail.auth import roles
from jobtail.http import access

PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
    ("POST", "/v3/auth/tokens"),  # how a password becomes a token
    # A token's own projects, and ending it: they check the X-Auth-Token themselves and need no
    # project's role (tests/http/test_sessions.py has their 401s).
    ("GET", "/v3/auth/projects"),
    ("DELETE", "/v3/auth/tokens"),
    # The temporary link from .../logs/url: its own HMAC signature and expiry are the credential
    # (CONTRACT §10.3); getting the link needs the usual credentials.
    ("GET", "/v2/{project_id}/training-jobs/{training_job_id}/tasks/{task_id}/logs/download"),
    # Loopback callers, or an admin of the project in X-Project-Id, as `metrics_access` says
    # (tests/http/test_monitoring.py has its 401s and 403s).
    ("GET", "/metrics"),
}


def operations(secure: SecureServer) -> list[tuple[str, str, dict[str, Any]]]:
    doc = httpx.get(secure.url + "/openapi.json").json()
    return [(method.upper(), path, op) for path, item in doc["paths"].items() for method, op in item.items()]


def fill(secure: SecureServer, path: str) -> str:
    values = {"project_id": secure.project, "training_job_id": secure.job_id, "task_id": "worker-0"}
    return re.sub(r"{(\w+)}", lambda m: values.get(m.group(1), "x"), path)


def body_of(op: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    content = op.get("requestBody", {}).get("content", {})
    if not content:
        return b"", {}
    media_type = next(iter(content))
    return (b"{}" if "json" in media_type else b"x"), {"Content-Type": media_type}


def lacking(action: str) -> str:
    """A role that does not allow `action`."""
    return next(role for role in ("ingest", "viewer", "developer") if not roles.allows(role, action))


def test_every_route_is_public_by_name_or_names_a_known_action(secure: SecureServer) -> None:
    for method, path, op in operations(secure):
        if (method, path) in PUBLIC:
            assert "x-modelarts-action" not in op and op["security"] == [], (method, path)
            continue
        assert "x-modelarts-action" in op, f"{method} {path} has no action and is not listed as public"
        assert op["x-modelarts-action"] in roles.ACTIONS, (method, path, op["x-modelarts-action"])
        assert roles.allows("admin", op["x-modelarts-action"])
    assert {(m, p) for m, p, _ in operations(secure)} >= PUBLIC


def test_every_guarded_route_refuses_strangers_and_the_wrong_role(secure: SecureServer) -> None:
    guarded = [(m, p, op) for m, p, op in operations(secure) if (m, p) not in PUBLIC]
    assert len(guarded) >= 2
    for method, path, op in guarded:
        target, action = fill(secure, path), op["x-modelarts-action"]
        body, headers = body_of(op)
        r = httpx.request(method, secure.url + target, content=body, headers=headers)
        assert (r.status_code, r.json()["error_code"]) == (401, "APIGW.0301"), (method, path, r.text)
        with secure.client(secure.key(lacking(action))) as client:
            r = client.request(method, target, content=body, headers=headers)
        assert (r.status_code, r.json()["error_code"]) == (403, "ModelArts.0108"), (method, path, r.text)
        assert f"({action})" in r.json()["error_msg"]


def test_the_action_constants_are_the_roles_actions() -> None:
    constants = {value for name, value in vars(access).items() if name.isupper() and isinstance(value, str)}
    assert constants == set(roles.ACTIONS)


@pytest.mark.parametrize("role", sorted(roles.ROLES))
def test_roles_table(role: str) -> None:
    expected = {
        "viewer": {roles.GET_JOB, roles.LIST_JOBS, roles.GET_LOGS},
        "developer": {roles.GET_JOB, roles.LIST_JOBS, roles.GET_LOGS, roles.CREATE_JOB, roles.UPDATE_JOB,
                      roles.DELETE_JOB, roles.LOG_EXPORT, roles.APPEND_LOGS},
        "admin": set(roles.ACTIONS),
        "ingest": {roles.APPEND_LOGS},
    }[role]
    assert {a for a in roles.ACTIONS if roles.allows(role, a)} == expected
    assert not roles.allows(None, roles.GET_JOB) and not roles.allows("root", roles.GET_JOB)
