"""The shipper's side of the append endpoint: where a task log ends, and appends that retry.

Every append names its offset. Network errors, 5xx and 429 are retried with backoff and jitter
(429 waits at least its `Retry-After`) until they succeed or the shipper is stopped; a 409
(`Jobtail.0409`) is handed back as `Diverged` with the log's end offset, for the caller to
decide; any other error is `ShipFailed`, which retrying cannot fix.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from jobtail.client import Client, request_failed
from jobtail.ship.backoff import Backoff

NOTICE_SECONDS = 30.0  # while a server stays away, say so this often


class ShipFailed(Exception):
    """A failure that retrying cannot fix (unknown job, no permission, log size cap, ...)."""


class Stopped(Exception):
    """The shipper was told to stop while a request was still being retried."""


class Diverged(Exception):
    """The server refused an append at `offset`: its log ends at `full_size` and the bytes differ
    (or `offset` is past the end)."""

    def __init__(self, offset: int, full_size: int) -> None:
        super().__init__(f"append at {offset} refused; the log ends at {full_size}")
        self.offset = offset
        self.full_size = full_size


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else 0.0


class Uplink:
    """Appends to one task log through `client`. `say` reports retries (rate-limited to one line
    per NOTICE_SECONDS while a failure lasts); `stop` ends retrying with `Stopped`."""

    def __init__(self, client: Client, job_id: str, task_id: str, *, backoff: Backoff | None = None,
                 say: Callable[[str], None] = lambda _: None, stop: threading.Event | None = None) -> None:
        self.client = client
        self.job_id, self.task_id = job_id, task_id
        self.path = f"/v2/{client.project_id}/training-jobs/{job_id}/tasks/{task_id}/logs"
        self.backoff = backoff or Backoff()
        self.stop = stop or threading.Event()
        self._say = say
        self._noticed_at = 0.0
        self.retries = 0  # requests retried, in total (for reports and tests)

    def end(self) -> int:
        """Where the task log ends now (its `full_size`)."""
        return int(self._send("GET", self.path + "/size").json()["full_size"])

    def append(self, offset: int, data: bytes) -> int:
        """Store `data` at `offset`; returns the log's end offset. Raises Diverged on a 409."""
        response = self._send("POST", self.path, params={"offset": offset}, content=data,
                              headers={"Content-Type": "application/octet-stream"})
        if response.status_code == 409:
            body = response.json()
            raise Diverged(offset, int(body["full_size"]))
        return int(response.json()["full_size"])

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        while True:
            if self.stop.is_set():
                raise Stopped()
            at_least = 0.0
            try:
                response = self.client.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                self._notice(f"cannot reach the server ({type(exc).__name__}: {exc})")
            else:
                status = response.status_code
                if status < 400 or status == 409:
                    if self.backoff.failures:
                        self._say("the server answers again; shipping")
                    self.backoff.reset()
                    self._noticed_at = 0.0
                    return response
                if status != 429 and status < 500:
                    failure = request_failed(response)
                    raise ShipFailed(f"{failure.code} {failure.message}") from failure
                at_least = _retry_after(response)
                self._notice(f"the server answered {status} {request_failed(response).code}")
            self.retries += 1
            if not self.backoff.wait(self.stop, at_least):
                raise Stopped()

    def _notice(self, what: str) -> None:
        now = time.monotonic()
        if now - self._noticed_at >= NOTICE_SECONDS:
            self._noticed_at = now
            self._say(f"{what}; retrying")
