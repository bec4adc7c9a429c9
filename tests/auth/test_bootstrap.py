"""First start: a default project, an admin credential, and a private credentials file."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from support.engine import open_identity

from jobtail.auth import manage
from jobtail.auth.bootstrap import bootstrap, endpoint_url
from jobtail.auth.secrets import secret_key_for

MASTER = b"m" * 32


def test_bootstrap_once_on_an_empty_store(meta_url: str, tmp_path: Path) -> None:
    identity = open_identity(meta_url)
    try:
        done = bootstrap(identity, MASTER, tmp_path, "http://127.0.0.1:8080")
        assert done is not None and done.path == tmp_path / "credentials.json"
        assert stat.S_IMODE(done.path.stat().st_mode) == 0o600
        data = json.loads(done.path.read_text())
        assert set(data) == {"endpoint", "project_id", "access_key", "secret_key", "user", "password"}
        assert data["endpoint"] == "http://127.0.0.1:8080" and data["project_id"] == done.project_id
        assert data["secret_key"] == secret_key_for(MASTER, data["access_key"])
        [project] = identity.projects()
        assert (project.id, project.name) == (done.project_id, "default")
        [admin] = identity.users()
        assert admin.name == "admin" and admin.grants == ((project.id, "admin"),) and admin.has_password
        access = identity.credential_access(data["access_key"], project.id)
        assert access is not None and access.role == "admin"

        assert bootstrap(identity, MASTER, tmp_path, "http://x") is None
        assert json.loads(done.path.read_text()) == data
    finally:
        identity.close()


def test_no_bootstrap_when_an_operator_set_things_up_first(meta_url: str, tmp_path: Path) -> None:
    identity = open_identity(meta_url)
    try:
        manage.create_project(identity, "mine")
        assert bootstrap(identity, MASTER, tmp_path, "http://x") is None
        assert not (tmp_path / "credentials.json").exists()
    finally:
        identity.close()


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [("127.0.0.1", 8080, "http://127.0.0.1:8080"), ("0.0.0.0", 80, "http://127.0.0.1:80"),
     ("::", 9000, "http://[::1]:9000"), ("example.org", 1, "http://example.org:1"), ("::1", 2, "http://[::1]:2")],
)
def test_endpoint_url(host: str, port: int, url: str) -> None:
    assert endpoint_url(host, port) == url
