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

For an operation with a body, `admit` runs all of this before the body is read, except what
needs the body: the signature of a request whose signer hashed its body (checked by `authorize`
against the SHA-256 taken while the body arrived) and the decision when the body names the
project (OTLP). A token, and a signature with `X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD` or over
an empty body, are checked in full before a byte of the body is read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
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
    EMPTY_SHA256,
    UNSIGNED_PAYLOAD,
    SignedAuthorization,
    decode_header_value,
    parse_authorization,
    parse_sdk_date,
    payload_hash_of_digest,
    verify,
    within_skew,
)
from jobtail.auth.store import IdentityStore
from jobtail.http.access import Admission, Principal
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

    async def admit(self, request: Request, action: str, project_id: str | None) -> Admission:
        """Everything but what needs the body: the whole check for a token, or for a signature
        whose payload line is known without the body (no body, or `UNSIGNED-PAYLOAD`); for one
        covering the body, all but the signature itself (the AK, its lockout, the date)."""
        headers = _headers(request)
        caller = await self._identify(request, headers, project_id or "", _payload_before_body(headers))
        request.state.caller = caller
        if caller.pending is not None:
            return Admission()
        if project_id is None:
            return Admission(proven=True)
        return Admission(self._decide(request, headers, caller.access, action, project_id), proven=True)

    async def authorize(self, request: Request, action: str, project_id: str) -> Principal:
        headers = _headers(request)
        caller: _Caller | None = getattr(request.state, "caller", None)  # from `admit`, for a body
        if caller is None:
            caller = await self._identify(request, headers, project_id, EMPTY_SHA256)
        elif caller.pending is not None:
            payload = payload_hash_of_digest(request.state.body_sha256, headers.get("x-sdk-content-sha256"))
            self._verify(request, headers, caller.pending, payload)
            caller.pending = None
        access = caller.access
        if project_id != caller.project_id:  # the body named the project
            access = await self._access(caller.kind, caller.key, project_id)
        return self._decide(request, headers, access, action, project_id)

    async def _identify(self, request: Request, headers: dict[str, str], project_id: str,
                        payload: str | None) -> _Caller:
        """Who the credential says the caller is; `payload` is the canonical request's payload
        line, or None when it needs the body (the signature is then left `pending`)."""
        token = headers.get("x-auth-token")
        authorization = headers.get("authorization")
        if token is not None:
            token = token.strip()
            if not token or len(token) > _MAX_CREDENTIAL_CHARS:
                raise unauthorized(BAD_TOKEN)
            digest = token_digest(token)
            return _Caller("token", digest, project_id, await self._access("token", digest, project_id))
        if authorization is not None:
            return await self._signature(request, headers, authorization, project_id, payload)
        raise unauthorized(NO_CREDENTIALS)

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

    async def _access(self, kind: str, key: str, project_id: str) -> Access:
        """What the token (by digest) or credential (by access key) may do in `project_id`."""
        if kind == "token":
            access = await self._lookup(kind, self.identity.token_access, key, project_id)
            if access is None:
                raise unauthorized(BAD_TOKEN)
            expires_at = access.expires_at or 0.0
            if expires_at <= time.time():
                raise unauthorized(f"token expires, expires_at: {_format_time(expires_at)}")
            return access
        access = await self._lookup(kind, self.identity.credential_access, key, project_id)
        if access is None:
            raise unauthorized(UNKNOWN_AK)
        return access

    async def _signature(self, request: Request, headers: dict[str, str], value: str, project_id: str,
                         payload: str | None) -> _Caller:
        if len(value) > _MAX_CREDENTIAL_CHARS:
            raise unauthorized(BAD_SIGNATURE)
        parsed = parse_authorization(value)
        if parsed is None:
            known = value.lstrip(" \t").startswith(_SIGNATURE_ALGORITHMS)
            raise unauthorized(BAD_SIGNATURE if known else BAD_TOKEN)
        access_key = parsed.access_key
        if not is_access_key(access_key):
            raise unauthorized(UNKNOWN_AK)
        if self.lockout.locked(access_key, _address(request)):
            raise unauthorized(LOCKED_AK)
        signed = parsed.signed_headers
        if "host" not in signed or "x-sdk-date" not in signed or any(name not in headers for name in signed):
            raise unauthorized(BAD_SIGNATURE)
        sdk_date = parse_sdk_date(headers["x-sdk-date"].strip())
        if sdk_date is None:
            raise unauthorized(BAD_SIGNATURE)
        if not within_skew(sdk_date, datetime.now(UTC), self._skew):
            raise unauthorized(EXPIRED_SIGNATURE)
        caller = _Caller("credential", access_key, project_id, await self._access("credential", access_key, project_id),
                         pending=parsed)
        if payload is not None:
            self._verify(request, headers, parsed, payload)
            caller.pending = None
        return caller

    def _verify(self, request: Request, headers: dict[str, str], parsed: SignedAuthorization, payload: str) -> None:
        """Check the signature over the request with `payload` as its payload line; five failures
        in a row lock the (AK, client address) pair out."""
        scope = request.scope
        raw_path = scope.get("raw_path") or quote(scope["path"]).encode()
        raw_path = raw_path.partition(b"?")[0]
        secret_key = secret_key_for(self._master_key, parsed.access_key)
        address = _address(request)
        if not verify(scope["method"], raw_path, scope.get("query_string", b""), headers, payload, parsed, secret_key):
            self.lockout.failed(parsed.access_key, address)
            raise unauthorized(BAD_SIGNATURE)
        self.lockout.succeeded(parsed.access_key, address)


@dataclass(slots=True)
class _Caller:
    """Who a request's credential says the caller is, kept in `request.state` between `admit`
    and `authorize`. `access` is as looked up for `project_id`; `pending` is a signature still
    to be checked against the body's hash."""

    kind: str  # "token" or "credential"
    key: str  # the token's digest or the access key
    project_id: str
    access: Access
    pending: SignedAuthorization | None = None


def _address(request: Request) -> str:
    return request.client.host if request.client else ""


def _payload_before_body(headers: dict[str, str]) -> str | None:
    """The canonical request's payload line when it is known before the body arrives: that of
    the empty body for a request declaring none, `UNSIGNED-PAYLOAD` for one that declares a
    body its signer left out; None when it is the body's SHA-256 (or the length is unknown)."""
    if "transfer-encoding" in headers:
        return None
    length = headers.get("content-length", "0").strip()
    if not length.isdigit():
        return None
    if int(length) == 0:
        return EMPTY_SHA256
    return UNSIGNED_PAYLOAD if headers.get("x-sdk-content-sha256") == UNSIGNED_PAYLOAD else None


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
