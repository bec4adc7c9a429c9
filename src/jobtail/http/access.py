"""The authorisation seam: every route names the action it needs; a Guard decides.

Routes declare ModelArts action names (`modelarts:trainJob:get`, ...). The Guard sees the
request, the action and the path's project and either returns the Principal or raises an
error (401 for who-are-you problems, 403 for may-not; `jobtail.http.errors` answers them). Swapping the Guard changes no handler.
For an operation with a body the Guard is asked twice: `admit` before the body is read (so bad
credentials cost no memory), `authorize` after it unless `admit` already decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request

from jobtail.auth.authenticator import Principal  # re-exported: who is calling
from jobtail.auth.roles import (  # re-exported: routes name their actions as access.GET_JOB, ...
    APPEND_LOGS,
    CREATE_JOB,
    DELETE_JOB,
    GET_JOB,
    GET_LOGS,
    LIST_JOBS,
    LOG_EXPORT,
    MANAGE_PROJECT,
    UPDATE_JOB,
)


@dataclass(frozen=True, slots=True)
class Admission:
    """What a Guard decided before a request's body was read.

    `principal`: the caller, when the body cannot change the decision (`authorize` is then not
    asked). `proven`: the credential itself is proven already (a token, a signature that does not
    cover the body), so only the decision may be left, e.g. when the body names the project.
    """

    principal: Principal | None = None
    proven: bool = False


class Guard(Protocol):
    async def admit(self, request: Request, action: str, project_id: str | None) -> Admission:
        """Before the body is read: raise ApiError for what is wrong already, else say what is
        decided. `project_id` None: the body will name the project."""

    async def authorize(self, request: Request, action: str, project_id: str) -> Principal:
        """Return the caller if it may perform `action` in `project_id`; raise ApiError otherwise.
        After `admit`, the body is in `request.state.body`, and for a caller `admit` did not
        prove, its SHA-256 in `.body_sha256`."""


class OpenGuard:
    """Lets everyone do everything: for tests of other concerns and in-process tools.
    The server's default is `jobtail.http.guard.IdentityGuard`."""

    async def admit(self, request: Request, action: str, project_id: str | None) -> Admission:
        return Admission(Principal("anonymous"), proven=True)

    async def authorize(self, request: Request, action: str, project_id: str) -> Principal:
        return Principal("anonymous")


__all__ = [
    "APPEND_LOGS", "CREATE_JOB", "DELETE_JOB", "GET_JOB", "GET_LOGS", "LIST_JOBS", "LOG_EXPORT", "MANAGE_PROJECT",
    "UPDATE_JOB", "Admission", "Guard", "OpenGuard", "Principal",
]
