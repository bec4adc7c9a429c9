"""The `jobtail` command line: `serve`, `admin` and the commands that talk to a server."""

from __future__ import annotations

from typing import Any

import click

from jobtail import __version__
from jobtail.cli.admin import admin
from jobtail.cli.options import load_settings, settings_options


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="jobtail")
def main() -> None:
    """jobtail: logs of training jobs, behind the ModelArts v2 training-job API."""


@main.command()
@settings_options()
def serve(**given: Any) -> None:
    """Run the HTTP server (SQLite and a local data directory unless told otherwise)."""
    from jobtail.http.server import serve as run

    settings = load_settings(given)
    click.echo(
        f"jobtail {__version__}: http://{settings.host}:{settings.port}  "
        f"database {settings.database_url}  blobs {settings.blob_url}",
        err=True,
    )
    run(settings)


main.add_command(admin)
