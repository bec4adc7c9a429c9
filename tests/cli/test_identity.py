"""`jobtail admin project|user|credential`, on the same settings as `serve`, with --json output."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from support.engine import open_identity

from jobtail.auth.secrets import load_master_key, secret_key_for
from jobtail.cli import main


def run(tmp_path: Path, *args: str, stdin: str | None = None, ok: bool = True) -> Any:
    result = CliRunner().invoke(main, ["admin", *args, "--data-dir", str(tmp_path)], input=stdin)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def out(tmp_path: Path, *args: str, stdin: str | None = None) -> Any:
    return json.loads(run(tmp_path, *args, "--json", stdin=stdin).stdout)


def test_projects_users_grants_and_credentials(tmp_path: Path) -> None:
    project = out(tmp_path, "project", "create", "research")
    assert len(project["id"]) == 32 and project["name"] == "research"
    assert out(tmp_path, "project", "create", "--id", "team-1", "prod")["id"] == "team-1"
    assert [p["id"] for p in out(tmp_path, "project", "list")] == [project["id"], "team-1"]
    assert run(tmp_path, "project", "create", "--id", "team-1", "again", ok=False).exit_code == 1

    assert out(tmp_path, "user", "create", "alice", "--password-stdin", stdin="s3cret\n")["has_password"]
    assert out(tmp_path, "user", "grant", "alice", "--project", "team-1", "--role", "developer") == {
        "user": "alice", "project_id": "team-1", "role": "developer"}
    [alice] = out(tmp_path, "user", "list")
    assert alice["grants"] == [{"project_id": "team-1", "role": "developer"}]

    user_key = out(tmp_path, "credential", "create", "--user", "alice")
    assert set(user_key) == {"access_key", "secret_key", "project_id"} and user_key["project_id"] == "team-1"
    project_key = out(tmp_path, "credential", "create", "--project", "team-1", "--role", "ingest", "--job", "job-1")
    assert project_key["project_id"] == "team-1"
    master = load_master_key(tmp_path / "master.key", create=False)
    assert stat.S_IMODE((tmp_path / "master.key").stat().st_mode) == 0o600
    assert project_key["secret_key"] == secret_key_for(master, project_key["access_key"])

    listed = out(tmp_path, "credential", "list")
    assert {c["access_key"] for c in listed} == {user_key["access_key"], project_key["access_key"]}
    assert all("secret_key" not in c for c in listed)
    assert user_key["secret_key"] not in run(tmp_path, "credential", "list").stdout
    assert out(tmp_path, "credential", "revoke", project_key["access_key"]) == {
        "access_key": project_key["access_key"], "revoked": True}
    assert run(tmp_path, "credential", "revoke", project_key["access_key"], ok=False).exit_code == 1

    identity = open_identity(f"sqlite:///{tmp_path / 'jobtail.db'}")  # what `serve` opens
    try:
        assert identity.credential_access(user_key["access_key"], "team-1").role == "developer"  # type: ignore[union-attr]
        assert identity.credential_access(project_key["access_key"], "team-1") is None
    finally:
        identity.close()

    assert out(tmp_path, "user", "revoke", "alice", "--project", "team-1")["revoked"]
    assert out(tmp_path, "user", "password", "alice", "--password-stdin", stdin="new\n")["has_password"]
    assert out(tmp_path, "user", "delete", "alice") == {"user": "alice", "deleted": True}
    assert out(tmp_path, "credential", "list") == []


def test_text_output_and_one_line_errors(tmp_path: Path) -> None:
    assert len(run(tmp_path, "project", "create", "p").stdout.strip()) == 32
    created = run(tmp_path, "credential", "create", "--project", run(tmp_path, "project", "list").stdout.split()[0],
                  "--role", "viewer").stdout
    assert "secret_key: " in created and "shown only now" in created
    for args, message in [
        (("user", "grant", "ghost", "--project", "x", "--role", "viewer"), "Error: no user named ghost"),
        (("credential", "create", "--user", "a", "--project", "b"), "Error: give either a user, or a project and a role"),
        (("credential", "create", "--project", "p-1", "--role", "root"), "Error: unknown role 'root'"),
        (("project", "create", "--id", "bad_id", "x"), "Error: invalid project id 'bad_id'"),
        (("user", "create", "bad name"), "Error: invalid user name 'bad name'"),
    ]:
        result = run(tmp_path, *args, ok=False)
        assert result.exit_code == 1 and result.output.startswith(message), result.output
        assert len(result.output.strip().splitlines()) == 1
    empty = run(tmp_path, "user", "create", "eve", "--password-stdin", stdin="", ok=False)
    assert empty.exit_code == 2 and "no password" in empty.output


def test_a_master_key_elsewhere(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "jobtail.key"
    project = out(tmp_path, "project", "create", "p")["id"]
    created = out(tmp_path, "credential", "create", "--project", project, "--role", "viewer",
                  "--master-key-file", str(key_file))
    assert created["secret_key"] == secret_key_for(load_master_key(key_file, create=False), created["access_key"])
    assert not (tmp_path / "master.key").exists()
