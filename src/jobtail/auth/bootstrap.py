"""First start: a default project and an admin credential, written to a private credentials file.

When the identity store holds no project, user or credential, `bootstrap` creates a project named
`default` (32 hex id), a user `admin` with the admin role in it and a random password (so the web
viewer can be signed in to at once), and a credential of that user, then writes
`{"endpoint", "project_id", "access_key", "secret_key", "user", "password"}` to
`DATA_DIR/credentials.json` (mode 600 from its first byte). `jobtail.client` and the CLI read that
file by default; the Huawei SDK takes the first four values. Only the password's scrypt hash is
stored in the database.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from jobtail.auth.passwords import hash_password
from jobtail.auth.records import Project, new_project_id
from jobtail.auth.secrets import create_private_file, new_access_key, secret_key_for
from jobtail.auth.store import IdentityStore

CREDENTIALS_FILE = "credentials.json"
DEFAULT_PROJECT = "default"
ADMIN_USER = "admin"


@dataclass(frozen=True, slots=True)
class Bootstrapped:
    path: Path
    project_id: str
    access_key: str


def endpoint_url(host: str, port: int) -> str:
    """The URL a local client uses to reach a server listening on host:port."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def bootstrap(identity: IdentityStore, master_key: bytes, data_dir: Path, endpoint: str) -> Bootstrapped | None:
    """Bootstrap an empty identity store (see the module docstring); None when it was not empty."""
    project = Project(new_project_id(), DEFAULT_PROJECT, time.time())
    access_key = new_access_key()
    if not identity.bootstrap(project, ADMIN_USER, access_key, project.created_at):
        return None
    password = secrets.token_urlsafe(18)  # 144 random bits, typeable
    identity.set_password(ADMIN_USER, hash_password(password))
    path = data_dir / CREDENTIALS_FILE
    document = {
        "endpoint": endpoint,
        "project_id": project.id,
        "access_key": access_key,
        "secret_key": secret_key_for(master_key, access_key),
        "user": ADMIN_USER,
        "password": password,
    }
    create_private_file(path, (json.dumps(document, indent=2) + "\n").encode(), replace=True)
    return Bootstrapped(path, project.id, access_key)
