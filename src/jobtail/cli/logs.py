"""`jobtail logs JOB [-t TASK]`: a task's log, like `ma-cli ma-job get-log -i JOB -t worker-0`.

Prints the ModelArts preview of the task log (its newest 5 MiB) as stored: carriage returns,
ANSI colours and all. Options are declared on `logs` and read in its body, so more of them
(follow, tail, grep) slot in next to `--task`.
"""

from __future__ import annotations

from typing import Any

import click

from jobtail.cli.remote import binary_stdout, connection_options, job_path, open_client


@click.command()
@click.argument("job_id")
@click.option("--task", "-t", default="worker-0", show_default=True, help="Task whose log to print.")
@connection_options
def logs(job_id: str, task: str, **params: Any) -> None:
    """Print a task's log (its newest 5 MiB: the ModelArts preview)."""
    with open_client(params) as client:
        preview = client.json("GET", f"{job_path(job_id)}/tasks/{task}/logs/preview")
    out = binary_stdout()
    out.write(preview["content"].encode())
    if preview["content"] and not preview["content"].endswith("\n") and out.isatty():
        out.write(b"\n")  # keep the prompt off a final unfinished line
    out.flush()
