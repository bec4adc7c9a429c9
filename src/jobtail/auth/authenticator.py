"""The signature and token engine: who is calling, and may they do this here?

`Authenticator` answers, without HTTP, for a request described by `RequestFacts`:

1. Credentials. `X-Auth-Token` (a token), else `Authorization: SDK-HMAC-SHA256 …` (an AK/SK
   signature over the raw path, query, signed headers and body, CONTRACT §7.2), else
   `AuthFailed(NO_CREDENTIALS)`. Bad credentials are `AuthFailed` with the message variants of
   CONTRACT §6.4. Five consecutive bad signatures for one (AK, client address) lock that pair
   out for five minutes (`jobtail.auth.lockout`); so do five wrong passwords for one (user,
   address) at `login`.
2. Project. An `X-Project-Id` header, or a credential bound to one project (tokens, project
   credentials), that differs from the request's project: `ProjectMismatch`.
3. Action. No role in the project allowing the action, or a job-bound credential used on
   another job's path: `NotAllowed` naming the action.

Nothing here depends on whether a job exists, so no caller learns about other projects' jobs.
The HTTP layer (`jobtail.http.guard`) turns a request into `RequestFacts`, decides which lookups
may run on its event loop (`cached_access`, `local_reads`), and maps these errors to API Gateway
answers (`jobtail.http.errors`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from jobtail import metrics
from jobtail.auth import roles
from jobtail.auth.lockout import Lockout
from jobtail.auth.records import Access, is_access_key
from jobtail.auth.secrets import secret_key_for, token_digest
from jobtail.auth.signing import (
    DEFAULT_SKEW,
    SignedAuthorization,
    parse_authorization,
    parse_sdk_date,
    verify,
    within_skew,
)
from jobtail.auth.store import IdentityStore
from jobtail.auth.tokens import IssuedToken, LoginFailed, password_login

NO_CREDENTIALS = "x-auth-token not found"
BAD_TOKEN = "decrypt token fail"
BAD_SIGNATURE = "verify aksk signature fail"
EXPIRED_SIGNATURE = "calc ak sk signature fail:signature expired"
UNKNOWN_AK = "Get secretKey failed,ak:******,err:ak not exist"
LOCKED_AK = "AK access failed to reach the limit,forbidden."
LOCKED_USER = "the user is locked after repeated failures, try again later"
WRONG_PASSWORD = "the username or password is wrong"

_MAX_CREDENTIAL_CHARS = 8192  # longer Authorization or X-Auth-Token values are refused unread
_SIGNATURE_ALGORITHMS = ("SDK-", "V11-")  # the Huawei SDK family: not a token, just not supported


class AuthFailed(Exception):
    """Who-are-you failed; `reason` is one of the module's messages (safe to show)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProjectMismatch(Exception):
    """The request's project differs from the one the caller named or is bound to (`source`)."""

    def __init__(self, project_id: str, other: str, source: str) -> None:
        super().__init__(f"project {project_id} is not {other} of the {source}")
        self.project_id = project_id
        self.other = other
        self.source = source


class NotAllowed(Exception):
    """The caller may not perform `action` here."""

    def __init__(self, action: str) -> None:
        super().__init__(action)
        self.action = action


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: `name` for logs and audit, never a secret.

    `kind`: "user" (a user's AK/SK), "project" (a project credential), "token", or "anonymous".
    `project_id`: the only project it may act in (tokens and project credentials), None when it
    acts wherever its user holds a role. `roles`: its roles in the request's project. `job_id`:
    the only job it may touch (a project credential limited to one job), else None.
    """

    name: str
    kind: str = "anonymous"
    project_id: str | None = None
    roles: frozenset[str] = frozenset()
    job_id: str | None = None


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What authentication needs of a request: `headers` by lowercase name (repeated headers
    joined with ","), the raw path and query as sent, the client's address, and the job the path
    names (or None)."""

    method: str
    raw_path: bytes
    query_string: bytes
    headers: dict[str, str]
    address: str
    path_job_id: str | None


@dataclass(frozen=True, slots=True)
class Presented:
    """The credential a request presents, checked for form but not yet looked up: a token
    (`kind` "token", `key` its digest) or a signature (`kind` "credential", `key` the AK)."""

    kind: str
    key: str
    signature: SignedAuthorization | None = None


class Authenticator:
    """See the module docstring. Thread-safe; `lockout` is per process."""

    def __init__(self, identity: IdentityStore, master_key: bytes, *, lockout: Lockout | None = None,
                 skew: timedelta = DEFAULT_SKEW) -> None:
        self.identity = identity
        self._master_key = master_key
        self.lockout = lockout or Lockout()
        self._skew = skew

    @property
    def local_reads(self) -> bool:
        """Lookups are local reads of microseconds (SQLite): fine to run on an event loop."""
        return self.identity.local_reads

    def present(self, facts: RequestFacts) -> Presented:
        """The request's credential (step 1 up to the lookup): its form, the AK's lockout and the
        signature's date are checked here."""
        headers = facts.headers
        token = headers.get("x-auth-token")
        if token is not None:
            token = token.strip()
            if not token or len(token) > _MAX_CREDENTIAL_CHARS:
                raise AuthFailed(BAD_TOKEN)
            return Presented("token", token_digest(token))
        value = headers.get("authorization")
        if value is None:
            raise AuthFailed(NO_CREDENTIALS)
        if len(value) > _MAX_CREDENTIAL_CHARS:
            raise AuthFailed(BAD_SIGNATURE)
        parsed = parse_authorization(value)
        if parsed is None:
            known = value.lstrip(" \t").startswith(_SIGNATURE_ALGORITHMS)
            raise AuthFailed(BAD_SIGNATURE if known else BAD_TOKEN)
        if not is_access_key(parsed.access_key):
            raise AuthFailed(UNKNOWN_AK)
        if self.lockout.locked(parsed.access_key, facts.address):
            raise AuthFailed(LOCKED_AK)
        signed = parsed.signed_headers
        if "host" not in signed or "x-sdk-date" not in signed or any(name not in headers for name in signed):
            raise AuthFailed(BAD_SIGNATURE)
        sdk_date = parse_sdk_date(headers["x-sdk-date"].strip())
        if sdk_date is None:
            raise AuthFailed(BAD_SIGNATURE)
        if not within_skew(sdk_date, datetime.now(UTC), self._skew):
            raise AuthFailed(EXPIRED_SIGNATURE)
        return Presented("credential", parsed.access_key, parsed)

    def cached_access(self, presented: Presented, project_id: str) -> Access | None:
        """`access` answered from memory, when the identity store keeps a current cache; None
        means "look it up" (which may take a network round trip)."""
        found = self.identity.cached_access(presented.kind, presented.key, project_id)
        return None if found is None else self._valid(presented, found)

    def access(self, presented: Presented, project_id: str) -> Access:
        """What the credential may do in `project_id`: AuthFailed when unknown (or expired)."""
        if presented.kind == "token":
            found = self.identity.token_access(presented.key, project_id)
        else:
            found = self.identity.credential_access(presented.key, project_id)
        return self._valid(presented, found)

    def _valid(self, presented: Presented, access: Access | None) -> Access:
        if presented.kind != "token":
            if access is None:
                raise AuthFailed(UNKNOWN_AK)
            return access
        if access is None:
            raise AuthFailed(BAD_TOKEN)
        expires_at = access.expires_at or 0.0
        if expires_at <= time.time():
            raise AuthFailed(f"token expires, expires_at: {_format_time(expires_at)}")
        return access

    def own_token(self, token: str | None) -> str:
        """The digest of `token` (an `X-Auth-Token` value) if it is valid and unexpired, for a
        call about the token itself; AuthFailed otherwise. A lookup: run it in a thread."""
        if token is None:
            raise AuthFailed(NO_CREDENTIALS)
        presented = self.present(RequestFacts("GET", b"", b"", {"x-auth-token": token}, "", None))
        self._valid(presented, self.identity.token_access(presented.key, ""))
        return presented.key

    def verify(self, facts: RequestFacts, signature: SignedAuthorization, payload: str) -> None:
        """Check the signature over the request with `payload` as its canonical payload line
        (the body's SHA-256, `UNSIGNED-PAYLOAD`, …); five failures in a row lock the (AK,
        client address) pair out."""
        secret_key = secret_key_for(self._master_key, signature.access_key)
        if not verify(facts.method, facts.raw_path, facts.query_string, facts.headers, payload, signature, secret_key):
            if self.lockout.failed(signature.access_key, facts.address):
                metrics.locked_out("access_key")
            raise AuthFailed(BAD_SIGNATURE)
        self.lockout.succeeded(signature.access_key, facts.address)

    def decide(self, facts: RequestFacts, access: Access, action: str, project_id: str) -> Principal:
        """Steps 2 and 3: the principal, if `access` allows `action` in `project_id`."""
        claimed = facts.headers.get("x-project-id")
        if project_id and claimed is not None and claimed.strip() != project_id:
            source = "token" if access.kind == "token" else "X-Project-Id header"
            raise ProjectMismatch(project_id, claimed.strip(), source)
        if project_id and access.scope is not None and access.scope != project_id:
            raise ProjectMismatch(project_id, access.scope, "token" if access.kind == "token" else "credential")
        if not roles.allows(access.role, action):
            raise NotAllowed(action)
        if access.job_id is not None and facts.path_job_id != access.job_id:
            raise NotAllowed(action)
        return Principal(
            access.subject,
            kind=access.kind,
            project_id=access.scope,
            roles=frozenset() if access.role is None else frozenset({access.role}),
            job_id=access.job_id,
        )

    def login(self, name: str, password: str, address: str, *, project_id: str | None = None,
              project_name: str | None = None, well_formed: bool = True) -> IssuedToken:
        """Check a password (slow: run it in a thread) and issue a token; AuthFailed when wrong
        (five in a row for one (user, address) lock that pair out) or when the user is locked.
        `well_formed` False: the name or scope cannot exist, answered as a wrong password."""
        lock_key = "password:" + name
        if self.lockout.locked(lock_key, address):
            raise AuthFailed(LOCKED_USER)
        if not well_formed:
            raise AuthFailed(WRONG_PASSWORD)
        try:
            issued = password_login(self.identity, name, password, time.time(), project_id=project_id,
                                    project_name=project_name)
        except LoginFailed as exc:
            if exc.reason == WRONG_PASSWORD and self.lockout.failed(lock_key, address):
                metrics.locked_out("password")
            raise AuthFailed(exc.reason) from None
        self.lockout.succeeded(lock_key, address)
        return issued


def _format_time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
