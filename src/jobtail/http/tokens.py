"""Keystone-style token issuing: `POST /v3/auth/tokens` with the password method.

Request (as IAM takes it; `domain` is accepted and ignored):

    {"auth": {"identity": {"methods": ["password"],
                           "password": {"user": {"name": "alice", "password": "…"}}},
              "scope": {"project": {"id": "…"}}}}          # or {"name": "…"}; no scope: unscoped

Response: 201, the token in the `X-Subject-Token` header, and `{"token": {"expires_at", …}}`.
Five wrong passwords in a row for one (user, client address) lock that pair for five minutes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response

from jobtail.auth.errors import InvalidIdentity
from jobtail.auth.records import check_name, check_project_id
from jobtail.auth.tokens import IssuedToken
from jobtail.http.context import context
from jobtail.http.errors import ApiError
from jobtail.http.routing import Operation

CONCURRENT_LOGINS = 4  # each scrypt check takes ~16 MiB and tens of milliseconds


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _field(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _invalid(param: str) -> ApiError:
    return ApiError(400, "ModelArts.2788", f"Invalid parameter({param}).")


def _parse(raw: bytes) -> tuple[str, str, str | None, str | None]:
    """(user name, password, scope project id, scope project name) from the request body."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "ModelArts.2787", "Invalid JSON request body.") from None
    methods = _field(body, "auth", "identity", "methods")
    if not isinstance(methods, list) or "password" not in methods:
        raise _invalid("auth.identity.methods")
    name = _field(body, "auth", "identity", "password", "user", "name")
    password = _field(body, "auth", "identity", "password", "user", "password")
    if not isinstance(name, str):
        raise _invalid("auth.identity.password.user.name")
    if not isinstance(password, str):
        raise _invalid("auth.identity.password.user.password")
    scope = _field(body, "auth", "scope")
    if scope is None or (isinstance(scope, dict) and "project" not in scope and "domain" in scope):
        return name, password, None, None  # unscoped (a domain scope means the same here)
    project_id, project_name = _field(scope, "project", "id"), _field(scope, "project", "name")
    if isinstance(project_id, str):
        return name, password, project_id, None
    if isinstance(project_name, str):
        return name, password, None, project_name
    raise _invalid("auth.scope.project")


def _well_formed(name: str, project_id: str | None, project_name: str | None) -> bool:
    try:
        check_name(name, "user")
        if project_id is not None:
            check_project_id(project_id)
        if project_name is not None:
            check_name(project_name, "project")
    except InvalidIdentity:
        return False
    return True


def _render(issued: IssuedToken) -> bytes:
    token: dict[str, Any] = {
        "methods": ["password"],
        "expires_at": _iso(issued.expires_at),
        "issued_at": _iso(issued.issued_at),
        "user": {"id": issued.user_id, "name": issued.user_name},
        "roles": [] if issued.role is None else [{"id": issued.role, "name": issued.role}],
        "catalog": [],
    }
    if issued.project_id is not None:
        token["project"] = {"id": issued.project_id, "name": issued.project_name}
    return orjson.dumps({"token": token})


async def create_token(request: Request) -> Response:
    app = context(request)
    authenticator = app.services.authenticator
    if authenticator is None:  # no identity store behind this app: no tokens
        raise ApiError(404, "APIGW.0101", "The API does not exist or has not been published in the environment.")
    name, password, project_id, project_name = _parse(request.state.body)
    address = request.client.host if request.client else ""
    well_formed = _well_formed(name, project_id, project_name)

    def login() -> IssuedToken:
        return authenticator.login(name, password, address, project_id=project_id, project_name=project_name,
                                   well_formed=well_formed)

    issued = await anyio.to_thread.run_sync(login, limiter=app.logins)
    return Response(_render(issued), status_code=201, media_type="application/json",
                    headers={"X-Subject-Token": issued.token})


_TOKEN_SCHEMA = {
    "type": "object",
    "properties": {
        "token": {
            "type": "object",
            "properties": {
                "expires_at": {"type": "string", "description": "UTC, ISO 8601; 24 hours after issue."},
                "issued_at": {"type": "string"},
                "methods": {"type": "array", "items": {"type": "string"}},
                "user": {"type": "object"},
                "project": {"type": "object", "description": "The scope; absent for an unscoped token."},
                "roles": {"type": "array", "items": {"type": "object"}},
            },
        }
    },
}

OPERATIONS = [
    Operation(
        "POST",
        "/v3/auth/tokens",
        create_token,
        operation_id="KeystoneCreateUserTokenByPassword",
        summary="Issue a token (returned in X-Subject-Token) for a user name and password.",
        action=None,
        body_type="application/json",
        status=201,
        response=_TOKEN_SCHEMA,
        tags=("identity",),
    ),
]
