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

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from jobtail.auth import roles
from jobtail.auth.authenticator import Authenticator
from jobtail.auth.secrets import token_digest
from jobtail.http.context import context
from jobtail.http.errors import ApiError
from jobtail.http.routing import Operation

_MAX_TOKEN_CHARS = 8192


def _authenticator(request: Request) -> Authenticator:
    authenticator = context(request).services.authenticator
    if authenticator is None:  # no identity store behind this app: no tokens
        raise ApiError(404, "APIGW.0101", "The API does not exist or has not been published in the environment.")
    return authenticator


async def _caller_digest(request: Request, authenticator: Authenticator) -> str:
    """The SHA-256 digest of the request's valid, unexpired `X-Auth-Token`; 401 otherwise."""
    return await run_in_threadpool(authenticator.own_token, request.headers.get("x-auth-token"))


async def token_projects(request: Request) -> Response:
    authenticator = _authenticator(request)
    digest = await _caller_digest(request, authenticator)
    found = await run_in_threadpool(authenticator.identity.token_projects, digest)
    everything = sorted(roles.ACTIONS)
    return Response(orjson.dumps({"projects": [
        {"id": project.id, "name": project.name, "enabled": True, "role": role,
         "actions": [action for action in everything if roles.allows(role, action)]}
        for project, role in found
    ]}), media_type="application/json")


async def revoke_token(request: Request) -> Response:
    authenticator = _authenticator(request)
    digest = await _caller_digest(request, authenticator)
    subject = request.headers.get("x-subject-token", "").strip()
    target = token_digest(subject) if subject else digest
    revoke = authenticator.identity.revoke_token
    if len(subject) > _MAX_TOKEN_CHARS or not await run_in_threadpool(revoke, target, digest):
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
