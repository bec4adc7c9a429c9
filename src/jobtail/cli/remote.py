"""Plumbing for the commands that talk to a jobtail server over HTTP (`submit`, `jobs`, `logs`).

Every such command takes `--url`, `--credentials`, `--token` and `--project` (also as
`JOBTAIL_URL`, `JOBTAIL_CREDENTIALS`, `JOBTAIL_TOKEN`, `JOBTAIL_PROJECT`); by default the URL,
project and AK/SK come from the credentials file `jobtail serve` writes on first start
(`DATA_DIR/credentials.json`, see `jobtail.client`). Server errors print as one line,
`Error: ModelArts.2775 Training job (ID: x) not found.`, with exit code 1.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

CONNECTION_OPTIONS = ("url", "credentials", "token", "project")


def connection_options(func: F) -> F:
    """Add the connection options and turn server and transport errors into one-line errors."""
    options = [
        click.option("--url", envvar="JOBTAIL_URL", help="Server URL [default: the credentials file's endpoint]  "
                     "[env: JOBTAIL_URL]"),
        click.option("--credentials", type=click.Path(path_type=Path), envvar="JOBTAIL_CREDENTIALS",
                     help="Credentials file (AK/SK) [default: DATA_DIR/credentials.json]  [env: JOBTAIL_CREDENTIALS]"),
        click.option("--token", envvar="JOBTAIL_TOKEN", help="Send this token (X-Auth-Token) instead of signing "
                     "with AK/SK  [env: JOBTAIL_TOKEN]"),
        click.option("--project", envvar="JOBTAIL_PROJECT", help="Project ID [default: the credentials file's]  "
                     "[env: JOBTAIL_PROJECT]"),
    ]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import httpx

        from jobtail.client import RequestFailed

        try:
            return func(*args, **kwargs)
        except RequestFailed as exc:
            raise click.ClickException(f"{exc.code} {exc.message}") from None
        except httpx.TransportError as exc:
            raise click.ClickException(f"cannot reach the jobtail server: {exc}") from None

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


def open_client(params: dict[str, Any]) -> Any:
    """A `jobtail.client.Client` from the connection options in `params` (removed from it)."""
    from jobtail.client import connect, default_credentials_path

    url, path, token, project = (params.pop(name, None) for name in CONNECTION_OPTIONS)
    try:
        return connect(url or None, credentials_file=path, token=token or None, project_id=project or None)
    except FileNotFoundError:
        where = path or default_credentials_path()
        raise click.ClickException(
            f"no credentials file at {where}: start `jobtail serve` once to create one, "
            "or pass --credentials, or --token with --url and --project") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def job_path(job_id: str) -> str:
    """The API path of a job (`{project_id}` is filled in by the client)."""
    return f"/v2/{{project_id}}/training-jobs/{job_id}"


def binary_stdout() -> IO[bytes]:
    """Standard output for log bytes as stored (ANSI colours and `\r` included, no re-encoding)."""
    sys.stdout.flush()
    return sys.stdout.buffer
