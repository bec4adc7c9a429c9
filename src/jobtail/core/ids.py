"""Validation of the identifiers that name projects, jobs and tasks, and of job names."""

from __future__ import annotations

import re
import uuid

from jobtail.core.errors import InvalidId, InvalidJob

MAX_PROJECT_ID_CHARS = 64
_PROJECT_ID = re.compile(rf"[A-Za-z0-9-]{{1,{MAX_PROJECT_ID_CHARS}}}")
_JOB_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_JOB_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_project_id(value: str) -> str:
    """Return `value` if it is a ModelArts project id (1-64 letters, digits, hyphens)."""
    if not _PROJECT_ID.fullmatch(value):
        raise InvalidId("project")
    return value


def check_job_id(value: str) -> str:
    """Return `value` if it could name a job; unknown but well-formed ids are the caller's concern."""
    if not _JOB_ID.fullmatch(value):
        raise InvalidId("job")
    return value


def check_task_id(value: str) -> str:
    """Return `value` if it could name a task (`worker-0`, `server-1`, ...)."""
    if not _TASK_ID.fullmatch(value):
        raise InvalidId("task")
    return value


def check_job_name(value: str) -> str:
    """Return `value` if it is a valid job name (1-64 letters, digits, `_`, `-`)."""
    if not _JOB_NAME.fullmatch(value):
        raise InvalidJob("name")
    return value


def new_job_id() -> str:
    """A fresh training job id: a lowercase UUID, like ModelArts issues."""
    return str(uuid.uuid4())


def worker_tasks(node_count: int) -> list[str]:
    """The task names of a job with `node_count` nodes: `worker-0 ... worker-(n-1)`."""
    return [f"worker-{i}" for i in range(node_count)]
