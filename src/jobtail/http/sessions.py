"""What a token may learn about itself, and ending it (Keystone's token API, for the viewer).

- `GET /v3/auth/projects`: the projects the token may act in, each with its user's role there
  and the actions that role allows (jobtail fields), so a page shows only the buttons it may use.
- `DELETE /v3/auth/tokens`: end the token named by `X-Subject-Token` (default: the caller's own);
  a user may end only its own tokens. Signing out of the viewer is this call.

Both need a valid `X-Auth-Token` and no role in any particular project, so they are not
project actions: each checks the token itself (unknown, expired or missing: 401 `APIGW.0301`,
as the guard answers), like `POST /v3/auth/tokens` checks a password.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from jobtail.auth import roles
from jobtail.auth.secrets import token_digest
from jobtail.http.errors import ApiError
from jobtail.http.guard import BAD_TOKEN, NO_CREDENTIALS, IdentityGuard, unauthorized
from jobtail.http.routing import Operation

_MAX_TOKEN_CHARS = 8192


def _identity_guard(request: Request) -> IdentityGuard:
    guard = request.app.state.guard
    if not isinstance(guard, IdentityGuard):  # no identity store behind this app: no tokens
        raise ApiError(404, "APIGW.0101", "The API does not exist or has not been published in the environment.")
    return guard


async def _caller_digest(request: Request, guard: IdentityGuard) -> str:
    """The SHA-256 digest of the request's valid, unexpired `X-Auth-Token`; 401 otherwise."""
    token = request.headers.get("x-auth-token")
    if token is None:
        raise unauthorized(NO_CREDENTIALS)
    token = token.strip()
    if not token or len(token) > _MAX_TOKEN_CHARS:
        raise unauthorized(BAD_TOKEN)
    digest = token_digest(token)
    access = await run_in_threadpool(guard.identity.token_access, digest, "")
    if access is None:
        raise unauthorized(BAD_TOKEN)
    expires_at = access.expires_at or 0.0
    if expires_at <= time.time():
        stamp = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        raise unauthorized(f"token expires, expires_at: {stamp}")
    return digest


async def token_projects(request: Request) -> Response:
    guard = _identity_guard(request)
    digest = await _caller_digest(request, guard)
    found = await run_in_threadpool(guard.identity.token_projects, digest)
    everything = sorted(roles.ACTIONS)
    return Response(orjson.dumps({"projects": [
        {"id": project.id, "name": project.name, "enabled": True, "role": role,
         "actions": [action for action in everything if roles.allows(role, action)]}
        for project, role in found
    ]}), media_type="application/json")


async def revoke_token(request: Request) -> Response:
    guard = _identity_guard(request)
    digest = await _caller_digest(request, guard)
    subject = request.headers.get("x-subject-token", "").strip()
    target = token_digest(subject) if subject else digest
    if len(subject) > _MAX_TOKEN_CHARS or not await run_in_threadpool(guard.identity.revoke_token, target, digest):
        raise ApiError(404, "Jobtail.0404", "The token to revoke does not exist or is not the caller's.")
    return Response(status_code=204)


OPERATIONS = [
    Operation(
        "GET", "/v3/auth/projects", token_projects, operation_id="KeystoneListAuthProjects",
        summary="The projects the X-Auth-Token may act in, with its role and allowed actions in each.",
        action=None,
        response={"type": "object", "properties": {"projects": {"type": "array", "items": {
            "type": "object", "properties": {
                "id": {"type": "string"}, "name": {"type": "string"}, "enabled": {"type": "boolean"},
                "role": {"type": "string"}, "actions": {"type": "array", "items": {"type": "string"}}}}}}},
        tags=("identity",),
    ),
    Operation(
        "DELETE", "/v3/auth/tokens", revoke_token, operation_id="KeystoneRevokeToken",
        summary="End the token in X-Subject-Token (default: the X-Auth-Token itself); only the caller's own.",
        action=None, status=204, tags=("identity",),
    ),
]
