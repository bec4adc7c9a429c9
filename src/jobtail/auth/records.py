"""Identity records: projects, users, grants, credentials, and what a request's credential resolves to.

Secrets never appear here: a credential's secret key is derived from its access key
(`jobtail.auth.secrets`), tokens are known only by their SHA-256 digest, and a user's password
only as an scrypt hash.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from jobtail.auth.errors import InvalidIdentity

_PROJECT_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_ACCESS_KEY = re.compile(r"[A-Za-z0-9]{1,64}")


def check_project_id(value: str) -> str:
    """A ModelArts project id: 1-64 letters, digits and hyphens."""
    if not _PROJECT_ID.fullmatch(value):
        raise InvalidIdentity(f"invalid project id {value!r}: use 1-64 letters, digits and hyphens")
    return value


def check_name(value: str, what: str) -> str:
    """A project or user name: 1-64 letters, digits, `.`, `_`, `@`, `-`, starting alphanumeric."""
    if not _NAME.fullmatch(value):
        raise InvalidIdentity(
            f"invalid {what} name {value!r}: use 1-64 letters, digits, '.', '_', '@', '-' (starting alphanumeric)"
        )
    return value


def is_access_key(value: str) -> bool:
    """Could `value` be an access key at all? (Checked before any lookup.)"""
    return _ACCESS_KEY.fullmatch(value) is not None


def new_project_id() -> str:
    """32 lowercase hex characters, like real ModelArts project ids."""
    return secrets.token_hex(16)


def new_user_id() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    name: str
    created_at: float


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str
    created_at: float
    has_password: bool
    grants: tuple[tuple[str, str], ...] = ()  # (project_id, role), sorted


@dataclass(frozen=True, slots=True)
class Credential:
    """An AK/SK pair: a user's (acts with the user's grants) or a project's (one role, maybe one job)."""

    access_key: str
    created_at: float
    user_name: str | None = None
    project_id: str | None = None
    role: str | None = None
    job_id: str | None = None
    description: str = ""

    @property
    def owner(self) -> str:
        if self.user_name is not None:
            return f"user {self.user_name}"
        job = f" job {self.job_id}" if self.job_id else ""
        return f"project {self.project_id} role {self.role}{job}"


@dataclass(frozen=True, slots=True)
class Access:
    """What a credential or token may do in one project, as looked up for one request.

    `subject`: who, printable and never a secret: `user NAME` (whether by AK/SK or token) or
    `credential AK` for a project credential. `scope`: the only project the credential may
    act in, None when it acts wherever its user holds a role. `role`: its role in the project that
    was asked about, None for none. `job_id`: the only job it may touch. `expires_at`: tokens only.
    """

    subject: str
    kind: str  # "user" (a user's credential), "project" (a project credential), "token"
    scope: str | None
    role: str | None
    job_id: str | None = None
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class Login:
    """A user found by name for password authentication, with its role in the requested scope."""

    user_id: str
    name: str
    password_hash: str | None
    project_id: str | None  # the scope's project, resolved from id or name; None if unscoped or unknown
    project_name: str | None
    role: str | None
