"""Temporary links to a task log: HMAC-signed, expiring, usable without any other credential."""

from __future__ import annotations

import hashlib
import hmac

LINK_TTL_SECONDS = 300  # ModelArts: the OBS link is valid for 5 minutes


def link_key(master_key: bytes) -> bytes:
    """The key that signs links, derived so that it can never verify anything else."""
    return hmac.new(master_key, b"jobtail-log-link", hashlib.sha256).digest()


def _message(project_id: str, job_id: str, task_id: str, mode: str, expires: int) -> bytes:
    return "\n".join(("v1", project_id, job_id, task_id, mode, str(expires))).encode()


def sign_link(key: bytes, project_id: str, job_id: str, task_id: str, mode: str, expires: int) -> str:
    return hmac.new(key, _message(project_id, job_id, task_id, mode, expires), hashlib.sha256).hexdigest()


def link_valid(key: bytes, project_id: str, job_id: str, task_id: str, mode: str, expires: int, signature: str) -> bool:
    """Whether `signature` was made by `sign_link` for exactly these fields (constant-time)."""
    expected = sign_link(key, project_id, job_id, task_id, mode, expires)
    return hmac.compare_digest(expected, signature)
