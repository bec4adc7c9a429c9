"""`jobtail ship`: send a command's output or a file to a task log, every byte exactly once.

    jobtail ship --job J --task worker-0 -- python train.py      # exit code passed through
    jobtail ship --job J --task worker-0 --file train.log --follow

The server, project and credential come from the usual connection options (`--url`,
`--credentials`, `--token`, `--project`); an `ingest` credential, optionally limited to the job,
is all a shipper needs (`jobtail admin credential create --project P --role ingest --job J --json`).
See `jobtail.ship` and the README's "Shipping logs" for the guarantees.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import click

from jobtail.cli.remote import connection_options, open_client

MiB = 1024 * 1024


def _say(message: str) -> None:
    click.echo(f"jobtail ship: {message}", err=True)


@click.command(context_settings={"allow_interspersed_args": False})
@click.option("--job", "job_id", required=True, help="Training job ID.")
@click.option("--task", "task_id", default="worker-0", show_default=True, help="Task whose log receives the bytes.")
@click.option("--file", "file_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Ship this file instead of running a command.")
@click.option("--follow", "-F", is_flag=True, help="With --file: keep following it, across rotation (like tail -F).")
@click.option("--state-file", type=click.Path(path_type=Path, dir_okay=False),
              help="With --file: where to keep the resume state [default: .NAME.jobtail-ship.json beside it].")
@click.option("--batch-bytes", default=4 * MiB, show_default=True, type=click.IntRange(1, 16 * MiB),
              help="Send when this many bytes are waiting ...")
@click.option("--batch-seconds", default=1.0, show_default=True, type=click.FloatRange(0.0, 60.0),
              help="... or when the oldest waiting byte is this old.")
@click.option("--max-backoff", default=5.0, show_default=True, type=click.FloatRange(0.01, 300.0),
              help="Longest wait between retries while the server is away (jittered).")
@click.option("--buffer-bytes", default=64 * MiB, show_default=True, type=click.IntRange(MiB),
              help="Command mode: output held while the server is away before the command blocks.")
@click.option("--quiet", "-q", is_flag=True, help="Command mode: do not also print the command's output.")
@click.argument("command", nargs=-1)
@connection_options
def ship(job_id: str, task_id: str, file_path: Path | None, follow: bool, state_file: Path | None,
         batch_bytes: int, batch_seconds: float, max_backoff: float, buffer_bytes: int, quiet: bool,
         command: tuple[str, ...], **params: Any) -> None:
    """Ship a command's output (`-- CMD ...`) or a file (`--file PATH`) to a task log."""
    from jobtail.ship.backoff import Backoff
    from jobtail.ship.command import CommandShipper
    from jobtail.ship.files import FileShipper, Pacing
    from jobtail.ship.uplink import ShipFailed, Stopped, Uplink

    if (file_path is None) == (not command):
        raise click.UsageError("give either a command (after --) or --file PATH")
    if file_path is None and (follow or state_file):
        raise click.UsageError("--follow and --state-file go with --file")
    pacing = Pacing(batch_bytes=batch_bytes, batch_seconds=batch_seconds)
    with open_client(params) as client:
        uplink = Uplink(client, job_id, task_id, backoff=Backoff(cap=max_backoff), say=_say, stop=threading.Event())
        if file_path is None:
            code = CommandShipper(uplink, list(command), pacing=pacing, buffer_bytes=buffer_bytes, tee=not quiet,
                                  say=_say).run()
            raise click.exceptions.Exit(code)

        def stop(signum: int, _frame: object) -> None:
            uplink.stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stop)
        shipper = FileShipper(uplink, file_path, follow=follow, state_path=state_file, pacing=pacing, say=_say)
        try:
            end = shipper.run()
        except ShipFailed as exc:
            raise click.ClickException(str(exc)) from None
        except Stopped:
            _say("stopped; the next start resumes where the server's log ends")
            return
        _say(f"{file_path}: shipped; the task log ends at {end}")
