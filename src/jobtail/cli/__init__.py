"""The `jobtail` command line: `serve`, `admin` and the commands that talk to a server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from jobtail import JobtailError, __version__
from jobtail.cli.admin import admin
from jobtail.cli.jobs import jobs, submit
from jobtail.cli.logs import logs
from jobtail.cli.options import load_settings, settings_options
from jobtail.cli.ship import ship
from jobtail.settings import Settings, redact_url


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="jobtail")
def main() -> None:
    """jobtail: logs of training jobs, behind the ModelArts v2 training-job API."""


@main.command()
@settings_options()
def serve(**given: Any) -> None:
    """Run the HTTP server (SQLite and a local data directory unless told otherwise)."""
    from jobtail.cli.server import FACTORY
    from jobtail.http.server import serve as run
    from jobtail.wiring import check_writable

    settings = load_settings(given)
    try:
        check_writable(settings)  # one line now, rather than a 500 for every write later
    except JobtailError as exc:
        raise click.ClickException(exc.message) from None
    _check_sandbox(settings)
    click.echo(
        f"jobtail {__version__}: http://{settings.host}:{settings.port}  "
        f"database {redact_url(settings.database_url)}  blobs {redact_url(settings.blob_url)}",
        err=True,
    )
    _bootstrap(settings)
    run(settings, FACTORY)


def _check_sandbox(settings: Settings) -> None:
    """Refuse to start, in one line, when jobs would run in a sandbox this machine cannot make."""
    if settings.executor != "local" or settings.executor_isolation != "bwrap":
        return
    from jobtail.runner.sandbox import Sandbox

    try:
        Sandbox.for_settings(settings).check()
    except JobtailError as exc:
        raise click.ClickException(exc.message) from None


def _bootstrap(settings: Settings) -> None:
    """On an empty identity store: a default project and an admin credential in a private file."""
    from jobtail.auth.bootstrap import bootstrap, endpoint_url
    from jobtail.auth.secrets import load_master_key
    from jobtail.wiring import open_identity

    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # private: keys, database, logs
    try:
        master_key = load_master_key(Path(settings.master_key_file))
    except JobtailError as exc:
        raise click.ClickException(exc.message) from None
    with open_identity(settings) as identity:
        done = bootstrap(identity, master_key, settings.data_dir, endpoint_url(settings.host, settings.port))
    if done is not None:
        click.echo(f"jobtail: first start: created project 'default' ({done.project_id}) and an admin "
                   f"credential (AK {done.access_key}); its secret and the password of user 'admin' (for the "
                   f"viewer's sign-in) are in {done.path} (mode 600)", err=True)


main.add_command(admin)
main.add_command(submit)
main.add_command(jobs)
main.add_command(logs)
main.add_command(ship)
