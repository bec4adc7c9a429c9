"""IdentityGuard: who is calling (AK/SK signature or token) and may they do this here?

Order of checks, each failure answered as ModelArts / API Gateway would:

1. Credentials. `X-Auth-Token` (a token), else `Authorization: SDK-HMAC-SHA256 …` (an AK/SK
   signature over the raw path, query, signed headers and body, CONTRACT §7.2), else
   401 `APIGW.0301` "…: x-auth-token not found". Bad credentials are 401 `APIGW.0301` with the
   message variants of CONTRACT §6.4. Five consecutive bad signatures for one (AK, client
   address) lock that pair out for five minutes (`jobtail.auth.lockout`).
2. Project. An `X-Project-Id` header, or a credential bound to one project (tokens, project
   credentials), that differs from the path's project: 404 `ModelArts.2786`.
3. Action. No role in the project allowing the action, or a job-bound credential used on
   another job's path: 403 `ModelArts.0108` naming the action.

Nothing here depends on whether a job exists, so no caller learns about other projects' jobs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from jobtail.auth import roles
from jobtail.auth.lockout import Lockout
from jobtail.auth.records import Access, is_access_key
from jobtail.auth.secrets import load_master_key, secret_key_for, token_digest
from jobtail.auth.signing import (
    DEFAULT_SKEW,
    decode_header_value,
    parse_authorization,
    parse_sdk_date,
    payload_hash,
    verify,
    within_skew,
)
from jobtail.auth.store import IdentityStore
from jobtail.http.access import Principal
from jobtail.http.errors import ApiError
from jobtail.meta.identity import open_identity

_PREFIX = "Incorrect IAM authentication information: "
NO_CREDENTIALS = "x-auth-token not found"
BAD_TOKEN = "decrypt token fail"
BAD_SIGNATURE = "verify aksk signature fail"
EXPIRED_SIGNATURE = "calc ak sk signature fail:signature expired"
UNKNOWN_AK = "Get secretKey failed,ak:******,err:ak not exist"
LOCKED_AK = "AK access failed to reach the limit,forbidden."

_MAX_CREDENTIAL_CHARS = 8192  # longer Authorization or X-Auth-Token values are refused unread
_SIGNATURE_ALGORITHMS = ("SDK-", "V11-")  # the Huawei SDK family: not a token, just not supported


def unauthorized(reason: str) -> ApiError:
    message = reason if reason == LOCKED_AK else _PREFIX + reason
    return ApiError(401, "APIGW.0301", message)


def forbidden(action: str) -> ApiError:
    return ApiError(403, "ModelArts.0108", f"You are not authorized to perform the ({action}) operation.")


def project_mismatch(path_project: str, other: str, source: str) -> ApiError:
    return ApiError(404, "ModelArts.2786",
                    f"The project ID ({path_project}) in the request does not match that({other}) in the {source}.")


def _format_time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class IdentityGuard:
    """The Guard of a real deployment; see the module docstring for what it checks."""

    def __init__(
        self,
        identity: IdentityStore,
        master_key: bytes,
        *,
        lockout: Lockout | None = None,
        skew: timedelta = DEFAULT_SKEW,
    ) -> None:
        self.identity = identity
        self._master_key = master_key
        self.lockout = lockout or Lockout()
        self._skew = skew

    def close(self) -> None:
        self.identity.close()

    async def _lookup(self, kind: str, lookup: Callable[[str, str], Access | None], key: str,
                      project_id: str) -> Access | None:
        # A local SQLite read (~20 µs) is far cheaper than a hop to the thread pool (~250 µs on
        # a busy 2-core machine); a lookup over the network must not block the event loop.
        cached = self.identity.cached_access(kind, key, project_id)
        if cached is not None:
            return cached
        if self.identity.local_reads:
            return lookup(key, project_id)
        return await run_in_threadpool(lookup, key, project_id)

    async def authorize(self, request: Request, action: str, project_id: str) -> Principal:
        headers = _headers(request)
        token = headers.get("x-auth-token")
        authorization = headers.get("authorization")
        if token is not None:
            access = await self._token(token, project_id)
        elif authorization is not None:
            access = await self._signature(request, headers, authorization, project_id)
        else:
            raise unauthorized(NO_CREDENTIALS)
        return self._decide(request, headers, access, action, project_id)

    def _decide(self, request: Request, headers: dict[str, str], access: Access, action: str,
                project_id: str) -> Principal:
        claimed = headers.get("x-project-id")
        if project_id and claimed is not None and claimed.strip() != project_id:
            source = "token" if access.kind == "token" else "X-Project-Id header"
            raise project_mismatch(project_id, claimed.strip(), source)
        if project_id and access.scope is not None and access.scope != project_id:
            raise project_mismatch(project_id, access.scope, "token" if access.kind == "token" else "credential")
        if not roles.allows(access.role, action):
            raise forbidden(action)
        if access.job_id is not None and request.path_params.get("training_job_id") != access.job_id:
            raise forbidden(action)
        return Principal(
            access.subject,
            kind=access.kind,
            project_id=access.scope,
            roles=frozenset() if access.role is None else frozenset({access.role}),
            job_id=access.job_id,
        )

    async def _token(self, token: str, project_id: str) -> Access:
        token = token.strip()
        if not token or len(token) > _MAX_CREDENTIAL_CHARS:
            raise unauthorized(BAD_TOKEN)
        access = await self._lookup("token", self.identity.token_access, token_digest(token), project_id)
        if access is None:
            raise unauthorized(BAD_TOKEN)
        expires_at = access.expires_at or 0.0
        if expires_at <= time.time():
            raise unauthorized(f"token expires, expires_at: {_format_time(expires_at)}")
        return access

    async def _signature(self, request: Request, headers: dict[str, str], value: str, project_id: str) -> Access:
        if len(value) > _MAX_CREDENTIAL_CHARS:
            raise unauthorized(BAD_SIGNATURE)
        parsed = parse_authorization(value)
        if parsed is None:
            known = value.lstrip(" \t").startswith(_SIGNATURE_ALGORITHMS)
            raise unauthorized(BAD_SIGNATURE if known else BAD_TOKEN)
        access_key = parsed.access_key
        if not is_access_key(access_key):
            raise unauthorized(UNKNOWN_AK)
        address = request.client.host if request.client else ""
        if self.lockout.locked(access_key, address):
            raise unauthorized(LOCKED_AK)
        signed = parsed.signed_headers
        if "host" not in signed or "x-sdk-date" not in signed or any(name not in headers for name in signed):
            raise unauthorized(BAD_SIGNATURE)
        sdk_date = parse_sdk_date(headers["x-sdk-date"].strip())
        if sdk_date is None:
            raise unauthorized(BAD_SIGNATURE)
        if not within_skew(sdk_date, datetime.now(UTC), self._skew):
            raise unauthorized(EXPIRED_SIGNATURE)
        access = await self._lookup("credential", self.identity.credential_access, access_key, project_id)
        if access is None:
            raise unauthorized(UNKNOWN_AK)
        scope = request.scope
        raw_path = scope.get("raw_path") or quote(scope["path"]).encode()
        raw_path = raw_path.partition(b"?")[0]
        body: bytes = getattr(request.state, "body", b"")
        digest = payload_hash(body, headers.get("x-sdk-content-sha256"))
        secret_key = secret_key_for(self._master_key, access_key)
        if not verify(scope["method"], raw_path, scope.get("query_string", b""), headers, digest, parsed, secret_key):
            self.lockout.failed(access_key, address)
            raise unauthorized(BAD_SIGNATURE)
        self.lockout.succeeded(access_key, address)
        return access


def open_identity_guard(database_url: str, master_key_file: Path) -> IdentityGuard:
    """An IdentityGuard on the metadata database's identity tables and the master key file
    (created on first use); `close()` it when done."""
    master_key = load_master_key(master_key_file)
    return IdentityGuard(open_identity(database_url, cache=True), master_key)


def _headers(request: Request) -> dict[str, str]:
    """Received headers by lowercase name, values decoded as the SDK encoded them (UTF-8).

    A header sent more than once keeps its values joined with "," (RFC 9110), so a repeated
    signed header cannot match what a single-valued signature covered.
    """
    headers: dict[str, str] = {}
    for raw_name, raw_value in request.scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        value = decode_header_value(raw_value)
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers
