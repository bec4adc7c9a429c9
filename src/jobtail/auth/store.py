"""The identity store interface: what authentication and the admin commands need from storage.

Implemented on the metadata database by `jobtail.auth.sql_store.SqlIdentityStore`. All methods
are synchronous and thread-safe; async callers run them in a thread. Changes take effect for the
very next request: a store that answers lookups from memory (`cached_access`) keeps that memory
current itself (on PostgreSQL, by notifications; see `jobtail.auth.identity_cache`).
"""

from __future__ import annotations

from typing import Protocol

from jobtail.auth.records import Access, Credential, Login, Project, User


class IdentityStore(Protocol):
    # True when the request-path lookups are local reads that take microseconds (SQLite), so
    # callers may run them on the event loop instead of in a thread.
    local_reads: bool

    # -- the request path -------------------------------------------------------------------

    def cached_access(self, kind: str, key: str, project_id: str) -> Access | None:
        """`credential_access` (kind "credential") or `token_access` (kind "token") answered from
        memory, when the store keeps a cache it knows to be current; None means "ask properly"."""

    def credential_access(self, access_key: str, project_id: str) -> Access | None:
        """What the credential `access_key` may do in `project_id`; None if no such credential."""

    def token_access(self, digest: str, project_id: str) -> Access | None:
        """What the token with SHA-256 `digest` may do in `project_id` (expired ones included,
        with `expires_at`); None if no such token."""

    def login(self, user_name: str, project_id: str | None, project_name: str | None) -> Login | None:
        """The user named `user_name` and its role in the project given by id or name (or None
        for an unscoped login); None if there is no such user."""

    def issue_token(self, digest: str, user_id: str, project_id: str | None, expires_at: float, now: float) -> None:
        """Store a token digest; also forgets this user's tokens that expired before `now`."""

    def token_projects(self, digest: str) -> list[tuple[Project, str]]:
        """The projects the token with SHA-256 `digest` may act in, each with the role its user
        holds there, by name: for a scoped token its project only (if the role is still held),
        else every project where the user holds a role. Empty for an unknown token."""

    def revoke_token(self, digest: str, owner_digest: str) -> bool:
        """Delete the token with `digest` if it belongs to the same user as the token with
        `owner_digest` (a user may end its own tokens); False if there is no such token."""

    # -- administration ---------------------------------------------------------------------

    def create_project(self, project_id: str, name: str, now: float) -> Project:
        """Raises IdentityExists when the id or the name is taken."""

    def projects(self) -> list[Project]: ...

    def create_user(self, name: str, password_hash: str | None, now: float) -> User:
        """Raises IdentityExists when the name is taken."""

    def users(self) -> list[User]: ...

    def set_password(self, name: str, password_hash: str | None) -> None:
        """Replace the user's password hash and drop its tokens. Raises IdentityNotFound."""

    def grant(self, user_name: str, project_id: str, role: str) -> None:
        """Give the user `role` in the project (replacing its previous role there)."""

    def revoke_grant(self, user_name: str, project_id: str) -> bool:
        """Take the user's role in the project away; False if it had none."""

    def delete_user(self, name: str) -> bool:
        """Delete the user with its grants, credentials and tokens; False if there is none."""

    def create_credential(self, credential: Credential) -> None:
        """Store a credential. A user credential names `user_name`; a project credential names
        `project_id` and `role` (and maybe `job_id`). Raises IdentityNotFound for an unknown
        user or project."""

    def credentials(self) -> list[Credential]: ...

    def revoke_credential(self, access_key: str) -> bool:
        """Delete the credential; False if there is none."""

    def bootstrap(self, project: Project, user_name: str, credential_key: str, now: float) -> bool:
        """If the store holds no project, user or credential: create `project`, an admin user
        `user_name` (no password) with the admin role there and a user credential `credential_key`,
        all in one transaction, and return True. Otherwise (or if another process won the race)
        change nothing and return False."""

    def close(self) -> None: ...
