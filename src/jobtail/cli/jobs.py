"""`jobtail submit` and `jobtail jobs list|show|stop|delete`: training jobs on a server, over HTTP.

`submit` sends a ModelArts CreateTrainingJob body: `algorithm.command` is the command after
`--` (one argument is taken as a shell command line as is; several are quoted and joined),
`algorithm.working_dir` the current directory, `algorithm.environments` the `--env` pairs,
`metadata.annotations` the `--annotation` pairs (fault tolerance: `jobtail.core.faults`) and
`spec.resource.node_count` `--workers`. It prints the job id. With `--follow` it prints the id
on stderr, streams worker-0's log to stdout, byte for byte, through the live stream
(`…/logs/stream`, `jobtail.client.LogFollow`) until the job ends, and exits with the job's exit
code (`job_exit_code`).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import time
from datetime import datetime
from typing import Any

import click

from jobtail.cli.remote import binary_stdout, connection_options, job_path, open_client

TERMINAL_PHASES = ("Completed", "Failed", "Terminated", "Abnormal")
RESUMES = 30  # `submit --follow`: how often to follow again after the server shut down (a restart)


def job_exit_code(job: dict[str, Any]) -> int:
    """The exit code a shell would give the job: 0 when Completed; else the exit code of the task
    that failed (the first non-zero one that jobtail did not stop: those messages start with
    "Stopped"), else the first non-zero one, else 1. Codes outside 1-255 (Abnormal's -1) become 1."""
    status = job["status"]
    if status["phase"] == "Completed":
        return 0
    codes = [(int(s.get("exit_code", 0)), str(s.get("message", ""))) for s in status.get("task_statuses") or []]
    failed = [code for code, message in codes if code != 0 and not message.startswith("Stopped")]
    stopped = [code for code, _ in codes if code != 0]
    code = (failed or stopped or [1])[0]
    return code if 1 <= code <= 255 else 1


def _follow(client: Any, job_id: str, task: str) -> dict[str, Any]:
    """Write the task's log to stdout until its job has ended; returns the ended job."""
    out, offset = binary_stdout(), None
    for _ in range(RESUMES):
        stream = client.follow(job_id, task, offset=offset)
        for _, data in stream:
            out.write(data)
            out.flush()
        offset = stream.offset
        if stream.reason != "server shutting down":
            break
        click.echo("jobtail: the server is shutting down; following again", err=True)
        time.sleep(1.0)
    job: dict[str, Any] = client.json("GET", job_path(job_id))
    return job


def _env_pair(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, setting = value.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{value!r} is not NAME=VALUE", ctx, param)
        pairs[name] = setting
    return pairs


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def _duration(ms: int) -> str:
    seconds = ms // 1000
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@click.command()
@click.option("--name", help="Job name (metadata.name) [default: job-DATE-TIME-XXXX].")
@click.option("--workers", "-w", default=1, show_default=True, type=click.IntRange(1, 256),
              help="Tasks worker-0 … worker-N-1, one process each.")
@click.option("--env", "-e", "environments", multiple=True, metavar="NAME=VALUE", callback=_env_pair,
              help="An environment variable for every task (repeatable).")
@click.option("--annotation", "-a", "annotations", multiple=True, metavar="NAME=VALUE", callback=_env_pair,
              help="A metadata annotation, e.g. fault-tolerance/job-retry-num=2 (repeatable).")
@click.option("--follow", "-f", is_flag=True, help="Stream worker-0's log until the job ends; exit with its exit code.")
@click.option("--json", "as_json", is_flag=True, help="Print the created job as JSON.")
@click.argument("command", nargs=-1, required=True)
@connection_options
def submit(name: str | None, workers: int, environments: dict[str, str], annotations: dict[str, str], follow: bool,
           as_json: bool, command: tuple[str, ...], **params: Any) -> None:
    """Run COMMAND as a training job: `jobtail submit --workers 2 -- python train.py`."""
    body = {
        "kind": "job",
        "metadata": {"name": name or f"job-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}",
                     "description": "submitted with jobtail submit", "annotations": annotations},
        "algorithm": {"command": command[0] if len(command) == 1 else shlex.join(command),
                      "working_dir": os.getcwd(), "environments": environments},
        "spec": {"resource": {"node_count": workers}},
    }
    with open_client(params) as client:
        job = client.json("POST", "/v2/{project_id}/training-jobs", json=body)
        job_id = job["metadata"]["id"]
        if as_json:
            click.echo(json.dumps(job))
        elif follow:
            click.echo(f"jobtail: job {job_id} submitted; following worker-0", err=True)
        else:
            click.echo(job_id)
        if not follow:
            return
        ended = _follow(client, job_id, "worker-0")
    code = job_exit_code(ended)
    click.echo(f"jobtail: job {job_id} {ended['status']['phase']} (exit code {code})", err=True)
    raise click.exceptions.Exit(code)


@click.group()
def jobs() -> None:
    """Training jobs on a jobtail server: list, show, stop, delete."""


@jobs.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 50), help="Jobs per page.")
@click.option("--page", default=0, show_default=True, type=click.IntRange(0), help="Page number (0 = newest).")
@click.option("--phase", "phases", multiple=True, help="Only jobs in this phase (repeatable).")
@click.option("--name", help="Only jobs whose name contains this.")
@click.option("--json", "as_json", is_flag=True, help="Print the ListTrainingJobs response as JSON.")
@connection_options
def jobs_list(limit: int, page: int, phases: tuple[str, ...], name: str | None, as_json: bool, **params: Any) -> None:
    """List the project's jobs, newest first."""
    filters: list[dict[str, Any]] = []
    if phases:
        filters.append({"key": "phase", "operator": "in", "value": list(phases)})
    if name:
        filters.append({"key": "name", "operator": "like", "value": [name]})
    with open_client(params) as client:
        found = client.json("POST", "/v2/{project_id}/training-job-searches",
                            json={"limit": limit, "offset": page, "filters": filters})
    if as_json:
        click.echo(json.dumps(found))
        return
    rows = [("ID", "NAME", "PHASE", "TASKS", "CREATED", "DURATION")]
    for job in found["items"]:
        status = job["status"]
        rows.append((job["metadata"]["id"], job["metadata"]["name"], status["phase"], str(len(status["tasks"])),
                     _when(job["metadata"]["create_time"]), _duration(status["duration"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if found["count"] > (page + 1) * limit:
        click.echo(f"({found['count']} jobs; --page {page + 1} for more)", err=True)


@jobs.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the ShowTrainingJobDetails response as JSON.")
@connection_options
def jobs_show(job_id: str, as_json: bool, **params: Any) -> None:
    """Show a job: phase, command, tasks and how they ended, its attempts, events."""
    with open_client(params) as client:
        job = client.json("GET", job_path(job_id))
        events = [] if as_json else client.json("GET", job_path(job_id) + "/events", params={"limit": 100})["events"]
    if as_json:
        click.echo(json.dumps(job))
        return
    status, algorithm = job["status"], job.get("algorithm") or {}
    click.echo(f"{job['metadata']['id']}  {job['metadata']['name']}  {status['phase']}")
    click.echo(f"  created   {_when(job['metadata']['create_time'])}")
    click.echo(f"  started   {_when(status['start_time'])}   duration {_duration(status['duration'])}")
    if algorithm.get("command"):
        click.echo(f"  command   {algorithm['command']}")
    if algorithm.get("working_dir"):
        click.echo(f"  directory {algorithm['working_dir']}")
    ended = {s["task"]: s for s in status.get("task_statuses") or []}
    for task in status["tasks"]:
        how = f"exit code {ended[task]['exit_code']}: {ended[task]['message']}" if task in ended else "-"
        click.echo(f"  {task:<10}{how}")
    records = status.get("running_records") or []
    for number, record in enumerate(records, 1):
        ended_at = _when(record["end_at"] * 1000) if record["end_at"] else "running"
        why = record["end_reason"] + (f" ({record['end_related_task']} failed first)"
                                      if record["end_related_task"] else "")
        again = ", restarted" if record["end_recover"] else ""
        click.echo(f"  attempt {number}  {_when(record['start_at'] * 1000)} - {ended_at}  {why}{again}".rstrip())
    for event in events:
        click.echo(f"  {event['time']}  {event['level']:<7}  {event['message']}")


@jobs.command("stop")
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Wait until the job has ended.")
@connection_options
def jobs_stop(job_id: str, wait: bool, **params: Any) -> None:
    """Terminate a job: SIGTERM to its processes, SIGKILL after the server's grace period."""
    with open_client(params) as client:
        job = client.json("POST", job_path(job_id) + "/actions", json={"action_type": "terminate"})
        while wait and job["status"]["phase"] not in TERMINAL_PHASES:
            time.sleep(0.2)
            job = client.json("GET", job_path(job_id))
    click.echo(f"{job_id} {job['status']['phase']}")


@jobs.command("delete")
@click.argument("job_id")
@connection_options
def jobs_delete(job_id: str, **params: Any) -> None:
    """Delete a job and its logs (a running job is stopped first)."""
    with open_client(params) as client:
        client.json("DELETE", job_path(job_id))
    click.echo(f"{job_id} deleted")
