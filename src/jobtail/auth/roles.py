"""Roles and the ModelArts action names they allow.

A role is granted per project. The action names are those of the ModelArts permission tables,
so a reader of the ModelArts docs knows what a role allows; `jobtail:*` actions are jobtail's own.

    viewer     get, list jobs; read logs
    developer  viewer + create, update (stop), delete jobs; append logs; log export
    admin      every action in the project, including managing its users
    ingest     append logs, nothing else (for shippers and log agents)
"""

from __future__ import annotations

GET_JOB = "modelarts:trainJob:get"
LIST_JOBS = "modelarts:trainJob:list"
GET_LOGS = "modelarts:trainJob:getLogs"
CREATE_JOB = "modelarts:trainJob:create"
UPDATE_JOB = "modelarts:trainJob:update"
DELETE_JOB = "modelarts:trainJob:delete"
LOG_EXPORT = "modelarts:trainJob:logExport"
APPEND_LOGS = "modelarts:trainJob:appendLogs"
MANAGE_PROJECT = "jobtail:project:manage"

ACTIONS = frozenset(
    {GET_JOB, LIST_JOBS, GET_LOGS, CREATE_JOB, UPDATE_JOB, DELETE_JOB, LOG_EXPORT, APPEND_LOGS, MANAGE_PROJECT}
)

_VIEWER = frozenset({GET_JOB, LIST_JOBS, GET_LOGS})
_DEVELOPER = _VIEWER | {CREATE_JOB, UPDATE_JOB, DELETE_JOB, LOG_EXPORT, APPEND_LOGS}

# None: every action, including ones added after this table was written.
ROLES: dict[str, frozenset[str] | None] = {
    "viewer": _VIEWER,
    "developer": _DEVELOPER,
    "admin": None,
    "ingest": frozenset({APPEND_LOGS}),
}


def allows(role: str | None, action: str) -> bool:
    """True when `role` (a key of ROLES, or None for no role) permits `action`."""
    if role not in ROLES:
        return False
    actions = ROLES[role]
    return actions is None or action in actions


def is_role(name: str) -> bool:
    return name in ROLES
