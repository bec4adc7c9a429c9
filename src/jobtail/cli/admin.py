"""`jobtail admin`: work on the store directly, with the same storage settings as `serve`."""

from __future__ import annotations

import json
from typing import Any

import click

from jobtail.cli import identity
from jobtail.cli.options import STORE_SETTINGS, domain_errors, load_settings, settings_options
from jobtail.core.types import TaskRef


@click.group()
def admin() -> None:
    """Work on the store directly (same settings as `serve`); for operators and scripts."""


@admin.group()
def job() -> None:
    """Training job records."""


@job.command("create")
@click.option("--project", "project_id", required=True, help="Project ID (1-64 letters, digits, hyphens).")
@click.option("--name", required=True, help="Job name (metadata.name).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Tasks worker-0..N-1 (as many as the API allows: 1-256).")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@settings_options(*STORE_SETTINGS)
@domain_errors
def job_create(project_id: str, name: str, workers: int, as_json: bool, **given: Any) -> None:
    """Create a record of a job that runs elsewhere (phase Running, executor none): its tasks
    receive logs through the append endpoint, `jobtail ship` or OTLP. Prints its id."""
    from jobtail.core.types import JobSpec
    from jobtail.wiring import open_jobs

    document = {"kind": "job", "metadata": {"name": name}, "spec": {"resource": {"node_count": workers}}}
    with open_jobs(load_settings(given)) as (jobs, _):
        record = jobs.create(project_id, JobSpec(name, node_count=workers, document=document), executor="none")
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
    from jobtail.wiring import open_jobs

    with open_jobs(load_settings(given)) as (jobs, store):
        tasks = task_ids or jobs.get(project_id, job_id).tasks
        for task in tasks:
            written = store.seal(TaskRef(project_id, job_id, task))
            click.echo(f"{task}: {written} segment(s) written", err=True)


@admin.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be dropped.")
@settings_options(*STORE_SETTINGS, "retention_days")
@domain_errors
def retention(dry_run: bool, **given: Any) -> None:
    """Drop sealed log segments older than --retention-days now (the server also does this every
    few minutes); prints one line per task log touched."""
    from jobtail.core.retention import DAY_SECONDS
    from jobtail.wiring import open_store

    settings = load_settings(given)
    store = open_store(settings)
    try:
        done = store.apply_retention(settings.retention_days * DAY_SECONDS, dry_run=dry_run)
    finally:
        store.close()
    verb = "would drop" if dry_run else "dropped"
    for e in done:
        cleared = " (cleared)" if e.start_offset >= e.end_offset else ""
        click.echo(f"{e.job_id}/{e.task_id}: {verb} {e.segments} segment(s), {e.bytes} bytes; "
                   f"starts at {e.start_offset}{cleared}")
    click.echo(f"{len(done)} task log(s), {sum(e.segments for e in done)} segment(s), "
               f"{sum(e.bytes for e in done)} bytes {verb}", err=True)


admin.add_command(identity.project)
admin.add_command(identity.user)
admin.add_command(identity.credential)
