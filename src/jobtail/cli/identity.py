"""`jobtail admin project|user|credential …`: identities, on the same settings as `serve`.

Every command takes `--json` for scripts. A credential's secret key is printed once, when it is
created; it is never stored (see `jobtail.auth.secrets`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from jobtail.auth import manage
from jobtail.auth.records import Credential
from jobtail.auth.secrets import load_master_key
from jobtail.cli.options import domain_errors, load_settings, settings_options
from jobtail.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

IDENTITY_SETTINGS = ("data_dir", "database_url", "master_key_file")


def _common(func: F) -> F:
    func = click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)
    return domain_errors(settings_options(*IDENTITY_SETTINGS)(func))


@contextmanager
def _identity(given: dict[str, Any]) -> Iterator[tuple[Any, Settings]]:
    from jobtail.wiring import open_identity

    settings = load_settings(given)
    with open_identity(settings) as identity:
        yield identity, settings


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _echo(as_json: bool, data: Any, text: str) -> None:
    click.echo(json.dumps(data) if as_json else text)


@click.group()
def project() -> None:
    """Projects: the unit that owns jobs and logs, like a ModelArts project."""


@project.command("create")
@click.argument("name")
@click.option("--id", "project_id", help="Project ID (1-64 letters, digits, hyphens) [default: 32 random hex].")
@_common
def project_create(name: str, project_id: str | None, as_json: bool, **given: Any) -> None:
    """Create a project; prints its id."""
    with _identity(given) as (identity, _):
        created = manage.create_project(identity, name, project_id)
    _echo(as_json, {"id": created.id, "name": created.name, "created_at": _when(created.created_at)}, created.id)


@project.command("list")
@_common
def project_list(as_json: bool, **given: Any) -> None:
    """List projects."""
    with _identity(given) as (identity, _):
        rows = identity.projects()
    data = [{"id": p.id, "name": p.name, "created_at": _when(p.created_at)} for p in rows]
    _echo(as_json, data, "\n".join(f"{p.id}  {p.name}" for p in rows))


@click.group()
def user() -> None:
    """Users: people (or programs) with a password for tokens and roles per project."""


def _read_password() -> str:
    password = sys.stdin.read()
    password = password[:-1] if password.endswith("\n") else password
    password = password[:-1] if password.endswith("\r") else password
    if not password:
        raise click.UsageError("no password on standard input")
    return password


@user.command("create")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (for tokens).")
@_common
def user_create(name: str, password_stdin: bool, as_json: bool, **given: Any) -> None:
    """Create a user (without --password-stdin it can use only AK/SK credentials)."""
    password = _read_password() if password_stdin else None
    with _identity(given) as (identity, _):
        created = manage.create_user(identity, name, password)
    _echo(as_json, {"id": created.id, "name": created.name, "has_password": created.has_password}, created.name)


@user.command("list")
@_common
def user_list(as_json: bool, **given: Any) -> None:
    """List users and their roles."""
    with _identity(given) as (identity, _):
        rows = identity.users()
    data = [{"id": u.id, "name": u.name, "has_password": u.has_password,
             "grants": [{"project_id": p, "role": r} for p, r in u.grants]} for u in rows]
    lines = [f"{u.name}  " + (" ".join(f"{p}:{r}" for p, r in u.grants) or "(no roles)") for u in rows]
    _echo(as_json, data, "\n".join(lines))


@user.command("grant")
@click.argument("name")
@click.option("--project", "project_id", required=True, help="Project ID.")
@click.option("--role", required=True, help="viewer, developer, admin or ingest.")
@_common
def user_grant(name: str, project_id: str, role: str, as_json: bool, **given: Any) -> None:
    """Give a user a role in a project (replacing its role there)."""
    with _identity(given) as (identity, _):
        manage.grant(identity, name, project_id, role)
    _echo(as_json, {"user": name, "project_id": project_id, "role": role}, f"{name}: {role} in {project_id}")


@user.command("revoke")
@click.argument("name")
@click.option("--project", "project_id", required=True, help="Project ID.")
@_common
def user_revoke(name: str, project_id: str, as_json: bool, **given: Any) -> None:
    """Take a user's role in a project away (at once, for every credential and token)."""
    with _identity(given) as (identity, _):
        revoked = identity.revoke_grant(name, project_id)
    _echo(as_json, {"user": name, "project_id": project_id, "revoked": revoked},
          f"{name}: no role in {project_id}" if revoked else f"{name} had no role in {project_id}")


@user.command("password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, required=True, help="Read the new password from standard input.")
@_common
def user_password(name: str, password_stdin: bool, as_json: bool, **given: Any) -> None:
    """Set a user's password; its tokens stop working at once."""
    password = _read_password()
    with _identity(given) as (identity, _):
        manage.set_password(identity, name, password)
    _echo(as_json, {"user": name, "has_password": True}, f"{name}: password set")


@user.command("delete")
@click.argument("name")
@_common
def user_delete(name: str, as_json: bool, **given: Any) -> None:
    """Delete a user with its roles, credentials and tokens (at once)."""
    with _identity(given) as (identity, _):
        deleted = identity.delete_user(name)
    if not deleted:
        raise click.ClickException(f"no user named {name}")
    _echo(as_json, {"user": name, "deleted": True}, f"{name}: deleted")


@click.group()
def credential() -> None:
    """AK/SK credentials, as the Huawei Cloud SDKs sign with."""


def _credential_data(c: Credential) -> dict[str, Any]:
    return {"access_key": c.access_key, "user": c.user_name, "project_id": c.project_id, "role": c.role,
            "job_id": c.job_id, "description": c.description, "created_at": _when(c.created_at)}


@credential.command("create")
@click.option("--user", "user_name", help="The user whose roles the credential acts with.")
@click.option("--project", "project_id", help="A project credential: the project ...")
@click.option("--role", help="... and its role there (viewer, developer, admin, ingest).")
@click.option("--job", "job_id", help="Limit a project credential to requests naming this job.")
@click.option("--description", default="", help="A note for `credential list`.")
@_common
def credential_create(user_name: str | None, project_id: str | None, role: str | None, job_id: str | None,
                      description: str, as_json: bool, **given: Any) -> None:
    """Create a credential: --user NAME, or --project P --role R [--job J]. The secret key is shown once."""
    with _identity(given) as (identity, settings):
        issued = manage.create_credential(
            identity, load_master_key(Path(settings.master_key_file)), user_name=user_name,
            project_id=project_id, role=role, job_id=job_id, description=description,
        )
        project_of = project_id
        if user_name is not None:
            grants = [g for u in identity.users() if u.name == user_name for g in u.grants]
            project_of = grants[0][0] if len(grants) == 1 else None  # the user's project, if only one
    data = {"access_key": issued.credential.access_key, "secret_key": issued.secret_key, "project_id": project_of}
    text = (f"access_key: {data['access_key']}\nsecret_key: {data['secret_key']}\nproject_id: {project_of or '-'}\n"
            "The secret key is shown only now.")
    _echo(as_json, data, text)


@credential.command("list")
@_common
def credential_list(as_json: bool, **given: Any) -> None:
    """List credentials (never their secret keys)."""
    with _identity(given) as (identity, _):
        rows = identity.credentials()
    lines = [f"{c.access_key}  {c.owner}  {_when(c.created_at)}  {c.description}".rstrip() for c in rows]
    _echo(as_json, [_credential_data(c) for c in rows], "\n".join(lines))


@credential.command("revoke")
@click.argument("access_key")
@_common
def credential_revoke(access_key: str, as_json: bool, **given: Any) -> None:
    """Revoke a credential (at once)."""
    with _identity(given) as (identity, _):
        revoked = identity.revoke_credential(access_key)
    if not revoked:
        raise click.ClickException(f"no credential {access_key}")
    _echo(as_json, {"access_key": access_key, "revoked": True}, f"{access_key}: revoked")

