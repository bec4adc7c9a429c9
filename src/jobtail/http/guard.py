"""IdentityGuard: the HTTP side of authentication, over `jobtail.auth.authenticator`.

The checks and their order are the Authenticator's (credentials, project, action; see there);
this module turns a Starlette request into `RequestFacts`, runs identity lookups on the event
loop when they are answered from memory or a local SQLite read and in a thread otherwise, and
lets the Authenticator's errors through to `jobtail.http.errors`, which answers them as API
Gateway does (401 `APIGW.0301`, 404 `ModelArts.2786`, 403 `ModelArts.0108`).

For an operation with a body, `admit` runs all of this before the body is read, except what
needs the body: the signature of a request whose signer hashed its body (checked by `authorize`
against the SHA-256 taken while the body arrived) and the decision when the body names the
project (OTLP). A token, and a signature with `X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD` or over
an empty body, are checked in full before a byte of the body is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from jobtail.auth.authenticator import Authenticator, Presented, Principal, RequestFacts
from jobtail.auth.records import Access
from jobtail.auth.signing import EMPTY_SHA256, UNSIGNED_PAYLOAD, decode_header_value, payload_hash_of_digest
from jobtail.http.access import Admission


class IdentityGuard:
    """The Guard of a real deployment; see the module docstring."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    async def admit(self, request: Request, action: str, project_id: str | None) -> Admission:
        """Everything but what needs the body: the whole check for a token, or for a signature
        whose payload line is known without the body (no body, or `UNSIGNED-PAYLOAD`); for one
        covering the body, all but the signature itself (the AK, its lockout, the date)."""
        facts = _facts(request)
        caller = await self._identify(facts, project_id or "", _payload_before_body(facts.headers))
        request.state.caller = caller
        if caller.pending:
            return Admission()
        if project_id is None:
            return Admission(proven=True)
        return Admission(self.authenticator.decide(facts, caller.access, action, project_id), proven=True)

    async def authorize(self, request: Request, action: str, project_id: str) -> Principal:
        facts = _facts(request)
        caller: _Caller | None = getattr(request.state, "caller", None)  # from `admit`, for a body
        if caller is None:
            caller = await self._identify(facts, project_id, EMPTY_SHA256)
        elif caller.pending and caller.presented.signature is not None:
            payload = payload_hash_of_digest(request.state.body_sha256, facts.headers.get("x-sdk-content-sha256"))
            self.authenticator.verify(facts, caller.presented.signature, payload)
            caller.pending = False
        access = caller.access
        if project_id != caller.project_id:  # the body named the project
            access = await self._access(caller.presented, project_id)
        return self.authenticator.decide(facts, access, action, project_id)

    async def _identify(self, facts: RequestFacts, project_id: str, payload: str | None) -> _Caller:
        """Who the credential says the caller is; `payload` is the canonical request's payload
        line, or None when it needs the body (the signature is then left `pending`)."""
        presented = self.authenticator.present(facts)
        caller = _Caller(presented, project_id, await self._access(presented, project_id))
        if presented.signature is not None:
            if payload is None:
                caller.pending = True
            else:
                self.authenticator.verify(facts, presented.signature, payload)
        return caller

    async def _access(self, presented: Presented, project_id: str) -> Access:
        # A local SQLite read (~20 µs) is far cheaper than a hop to the thread pool (~250 µs on
        # a busy 2-core machine); a lookup over the network must not block the event loop.
        cached = self.authenticator.cached_access(presented, project_id)
        if cached is not None:
            return cached
        if self.authenticator.local_reads:
            return self.authenticator.access(presented, project_id)
        return await run_in_threadpool(self.authenticator.access, presented, project_id)


@dataclass(slots=True)
class _Caller:
    """Who a request's credential says the caller is, kept in `request.state` between `admit`
    and `authorize`. `access` is as looked up for `project_id`; `pending`: the signature is
    still to be checked against the body's hash."""

    presented: Presented
    project_id: str
    access: Access
    pending: bool = False


def _facts(request: Request) -> RequestFacts:
    scope = request.scope
    raw_path = scope.get("raw_path") or quote(scope["path"]).encode()
    job_id = request.path_params.get("training_job_id")
    return RequestFacts(scope["method"], raw_path.partition(b"?")[0], scope.get("query_string", b""),
                        _headers(request), _address(request), job_id if isinstance(job_id, str) else None)


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
