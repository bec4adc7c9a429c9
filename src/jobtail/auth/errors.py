"""Errors of identity management (projects, users, grants, credentials).

    JobtailError (jobtail.core.errors)
    └── IdentityError             something about identities went wrong; `message` is for the operator
        ├── InvalidIdentity       a malformed id, name, role or option combination
        ├── IdentityExists        a project or user of that id or name already exists
        ├── IdentityNotFound      no such project, user or credential
        └── MasterKeyError        the master key file is unreadable or malformed

Request authentication failures are not exceptions of this module: the guard answers them with
API Gateway errors directly (`jobtail.http.guard`).
"""

from __future__ import annotations

from jobtail.core.errors import JobtailError


class IdentityError(JobtailError):
    pass


class InvalidIdentity(IdentityError):
    pass


class IdentityExists(IdentityError):
    pass


class IdentityNotFound(IdentityError):
    pass


class MasterKeyError(IdentityError):
    pass
