"""Identity administration: validated operations on an IdentityStore (used by `jobtail admin`).

These check their input (ids, names, roles, option combinations), generate ids and keys, and
hash passwords; the store only stores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from jobtail.auth import roles
from jobtail.auth.errors import InvalidIdentity
from jobtail.auth.passwords import hash_password
from jobtail.auth.records import Credential, Project, User, check_name, check_project_id, new_project_id
from jobtail.auth.secrets import new_access_key, secret_key_for
from jobtail.auth.store import IdentityStore
from jobtail.core import ids
from jobtail.core.errors import InvalidId


@dataclass(frozen=True, slots=True)
class IssuedCredential:
    """A new credential and its secret key: shown once, never stored."""

    credential: Credential
    secret_key: str


def create_project(identity: IdentityStore, name: str, project_id: str | None = None) -> Project:
    check_name(name, "project")
    return identity.create_project(check_project_id(project_id) if project_id else new_project_id(), name, time.time())


def _hash(password: str) -> str:
    try:
        return hash_password(password)
    except ValueError as exc:
        raise InvalidIdentity(str(exc)) from None


def create_user(identity: IdentityStore, name: str, password: str | None = None) -> User:
    """A user; without a password it can use only AK/SK credentials, not tokens."""
    check_name(name, "user")
    return identity.create_user(name, None if password is None else _hash(password), time.time())


def set_password(identity: IdentityStore, name: str, password: str) -> None:
    """Replace the user's password; its tokens stop working at once."""
    identity.set_password(name, _hash(password))


def check_role(role: str) -> str:
    if not roles.is_role(role):
        raise InvalidIdentity(f"unknown role {role!r}: use one of {', '.join(roles.ROLES)}")
    return role


def grant(identity: IdentityStore, user_name: str, project_id: str, role: str) -> None:
    identity.grant(user_name, check_project_id(project_id), check_role(role))


def create_credential(
    identity: IdentityStore,
    master_key: bytes,
    *,
    user_name: str | None = None,
    project_id: str | None = None,
    role: str | None = None,
    job_id: str | None = None,
    description: str = "",
) -> IssuedCredential:
    """A user's credential (`user_name`) or a project credential (`project_id` + `role`, and
    optionally `job_id` to allow only requests whose path names that job)."""
    if (user_name is None) == (project_id is None):
        raise InvalidIdentity("give either a user, or a project and a role")
    if user_name is not None and (role is not None or job_id is not None):
        raise InvalidIdentity("a user's credential acts with the user's roles: --role and --job need --project")
    if project_id is not None:
        check_project_id(project_id)
        if role is None:
            raise InvalidIdentity("a project credential needs a role")
        check_role(role)
    if job_id is not None:
        try:
            ids.check_job_id(job_id)
        except InvalidId:
            raise InvalidIdentity(f"invalid job id {job_id!r}") from None
    if len(description) > 255:
        raise InvalidIdentity("the description is longer than 255 characters")
    credential = Credential(new_access_key(), time.time(), user_name, project_id, role, job_id, description)
    identity.create_credential(credential)
    return IssuedCredential(credential, secret_key_for(master_key, credential.access_key))
