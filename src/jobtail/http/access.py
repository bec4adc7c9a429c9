"""The authorisation seam: every route names the action it needs; a Guard decides.

Routes declare ModelArts action names (`modelarts:trainJob:get`, ...). The Guard sees the
request, the action and the path's project and either returns the Principal or raises an
ApiError (401 for who-are-you problems, 403 for may-not). Swapping the Guard changes no handler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: `name` for logs and audit, never a secret."""

    name: str


class Guard(Protocol):
    async def authorize(self, request: Request, action: str, project_id: str) -> Principal:
        """Return the caller if it may perform `action` in `project_id`; raise ApiError otherwise."""


class OpenGuard:
    """Lets everyone do everything: the embedded default until identity is configured."""

    async def authorize(self, request: Request, action: str, project_id: str) -> Principal:
        return Principal("anonymous")


# ModelArts action names used by jobtail's routes.
GET_JOB = "modelarts:trainJob:get"
APPEND_LOGS = "modelarts:trainJob:appendLogs"  # jobtail's own: shippers and executors append
