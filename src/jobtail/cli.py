"""The `jobtail` command line.

Flags of `serve` and `admin` are generated from `Settings` fields, so a flag, its `JOBTAIL_*`
environment variable and its settings field always share one name.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from jobtail import __version__
from jobtail.core.errors import JobtailError
from jobtail.core.types import TaskRef
from jobtail.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

_CLICK_TYPES: dict[Any, click.ParamType] = {int: click.INT, float: click.FLOAT, str: click.STRING, Path: click.Path(path_type=Path)}


def settings_options(*names: str) -> Callable[[F], F]:
    """Add one `--flag` per named Settings field (all fields when none are named)."""
    fields = Settings.model_fields
    chosen = names or tuple(fields)

    def decorate(func: F) -> F:
        for name in reversed(chosen):
            field = fields[name]
            env = f"JOBTAIL_{name.upper()}"
            func = click.option(
                f"--{name.replace('_', '-')}",
                name,
                type=_CLICK_TYPES.get(field.annotation, click.STRING),
                default=None,
                help=f"{field.description}  [env: {env}]",
            )(func)
        return func

    return decorate


def load_settings(given: dict[str, Any]) -> Settings:
    """Settings from flags that were given, then `JOBTAIL_*` variables, then defaults."""
    try:
        return Settings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(problems) from None


def domain_errors(func: F) -> F:
    """Show domain errors as one-line CLI errors instead of tracebacks."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except JobtailError as exc:
            raise click.ClickException(exc.message) from None

    return wrapper  # type: ignore[return-value]


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


STORE_SETTINGS = ("data_dir", "database_url", "blob_url")


@main.group()
def admin() -> None:
    """Work on the store directly (same settings as `serve`); for operators and scripts."""


@admin.group()
def job() -> None:
    """Training job records."""


@job.command("create")
@click.option("--project", "project_id", required=True, help="Project ID (1-64 letters, digits, hyphens).")
@click.option("--name", required=True, help="Job name (metadata.name).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 1024), help="Tasks worker-0..N-1.")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@settings_options(*STORE_SETTINGS)
@domain_errors
def job_create(project_id: str, name: str, workers: int, as_json: bool, **given: Any) -> None:
    """Create a job record whose tasks receive logs through the append endpoint; prints its id."""
    from jobtail.wiring import open_store

    store = open_store(load_settings(given))
    try:
        record = store.create_job(project_id, name, node_count=workers)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps({"id": record.id, "project_id": record.project_id, "name": record.name,
                               "tasks": list(record.tasks), "create_time": record.created_at}))
    else:
        click.echo(record.id)


@admin.command()
@click.option("--project", "project_id", required=True, help="Project ID.")
@click.argument("job_id")
@click.option("--task", "task_ids", multiple=True, help="Task to seal (repeatable); every task when omitted.")
@settings_options(*STORE_SETTINGS)
@domain_errors
def seal(project_id: str, job_id: str, task_ids: tuple[str, ...], **given: Any) -> None:
    """Seal the heads of a job's task logs into segments now."""
    from jobtail.wiring import open_store

    store = open_store(load_settings(given))
    try:
        tasks = task_ids or store.get_job(project_id, job_id).tasks
        for task in tasks:
            written = store.seal(TaskRef(project_id, job_id, task))
            click.echo(f"{task}: {written} segment(s) written", err=True)
    finally:
        store.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
