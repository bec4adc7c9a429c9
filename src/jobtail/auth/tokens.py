"""Password logins that issue tokens (the domain side of Keystone-style `POST /v3/auth/tokens`).

A token is valid for 24 hours. Scoped to a project, it acts only there, with the user's current
role in it; unscoped, it acts wherever the user holds a role. Only its SHA-256 digest is stored,
and deleting the user or changing its password ends it at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobtail.auth.passwords import verify_password
from jobtail.auth.secrets import new_token, token_digest
from jobtail.auth.store import IdentityStore

TOKEN_TTL = 24 * 3600.0


class LoginFailed(Exception):
    """Wrong user name or password, or no role in the requested project; `reason` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    issued_at: float
    expires_at: float
    user_id: str
    user_name: str
    project_id: str | None
    project_name: str | None
    role: str | None


def password_login(
    identity: IdentityStore,
    user_name: str,
    password: str,
    now: float,
    *,
    project_id: str | None = None,
    project_name: str | None = None,
) -> IssuedToken:
    """Check the password (slow: run in a thread) and issue a token; raises LoginFailed.

    An unknown user costs the same scrypt work as a known one, so timing does not reveal users.
    """
    login = identity.login(user_name, project_id, project_name)
    if not verify_password(password, None if login is None else login.password_hash) or login is None:
        raise LoginFailed("the username or password is wrong")
    scoped = project_id is not None or project_name is not None
    if scoped and login.role is None:
        raise LoginFailed("the user has no role in the requested project")
    token = new_token()
    expires_at = now + TOKEN_TTL
    identity.issue_token(token_digest(token), login.user_id, login.project_id if scoped else None, expires_at, now)
    return IssuedToken(token, now, expires_at, login.user_id, login.name,
                       login.project_id if scoped else None, login.project_name if scoped else None, login.role)
