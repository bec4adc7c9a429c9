"""Follow one task's log until its job ends, by polling the preview (`submit --follow`).

Each round reads the job's phase first and the preview second, so the round that sees the job
ended also sees every byte of its output (the executor finishes a job only once its output is
in the logs). New bytes are written as they appear, up to the last `\\n` or `\\r` — a progress
bar redrawn with `\\r` moves; an unfinished line waits until it is finished or the job ends.
Output that scrolled out of the preview's 5 MiB between two rounds is reported as skipped.

Positions are the log's byte offsets; the preview's `content` maps onto them exactly when the
log is valid UTF-8 (bytes that are not are shown as U+FFFD and may shift the cut slightly).
"""

from __future__ import annotations

import sys
import time
from typing import IO, TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # the client (httpx) loads only when a command talks to a server
    from jobtail.client import Client

TERMINAL_PHASES = ("Completed", "Failed", "Terminated", "Abnormal")
NOT_GENERATED = "ModelArts.2818"


def job_path(job_id: str) -> str:
    return f"/v2/{{project_id}}/training-jobs/{job_id}"


class PreviewFollower:
    """Writes the new part of a task log to `out` each time `round()` is called."""

    def __init__(self, client: Client, job_id: str, task: str, out: IO[bytes]) -> None:
        self.client = client
        self.job_id = job_id
        self.task = task
        self.out = out
        self.offset = 0  # the log offset up to which output was written

    def round(self) -> dict[str, Any]:
        """One poll: returns the job, after writing whatever of the log is new."""
        from jobtail.client import RequestFailed

        job: dict[str, Any] = self.client.json("GET", job_path(self.job_id))
        ended = job["status"]["phase"] in TERMINAL_PHASES
        try:
            preview = self.client.json("GET", f"{job_path(self.job_id)}/tasks/{self.task}/logs/preview")
        except RequestFailed as exc:
            if exc.code != NOT_GENERATED:
                raise
            return job
        self._write(preview["content"].encode(), int(preview["full_size"]), whole=ended)
        return job

    def run(self, interval: float = 0.5) -> dict[str, Any]:
        """Follow until the job ends; returns the ended job."""
        while True:
            job = self.round()
            if job["status"]["phase"] in TERMINAL_PHASES:
                return job
            time.sleep(interval)

    def _write(self, content: bytes, full_size: int, whole: bool) -> None:
        begins = full_size - len(content)
        if self.offset < begins:
            click.echo(f"[jobtail: {begins - self.offset} bytes of {self.task}'s log scrolled out of the "
                       "preview before they could be shown]", err=True)
            self.offset = begins
        chunk = content[self.offset - begins:]
        if not whole:
            chunk = chunk[:max(chunk.rfind(b"\n"), chunk.rfind(b"\r")) + 1]
        if chunk:
            self.out.write(chunk)
            self.out.flush()
            self.offset += len(chunk)


def job_exit_code(job: dict[str, Any]) -> int:
    """The exit code a shell would give the job: 0 when Completed; else the exit code of the task
    that failed (the first non-zero one not "Stopped" by jobtail), else the first non-zero one,
    else 1. Codes outside 1-255 (an Abnormal job's -1) become 1."""
    status = job["status"]
    if status["phase"] == "Completed":
        return 0
    codes = [(int(s.get("exit_code", 0)), str(s.get("message", ""))) for s in status.get("task_statuses") or []]
    failed = [code for code, message in codes if code != 0 and not message.startswith("Stopped")]
    stopped = [code for code, _ in codes if code != 0]
    code = (failed or stopped or [1])[0]
    return code if 1 <= code <= 255 else 1


def binary_stdout() -> IO[bytes]:
    """Standard output for bytes as stored (ANSI colours and `\r` included, no re-encoding)."""
    sys.stdout.flush()
    return sys.stdout.buffer
