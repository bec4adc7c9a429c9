"""A small synchronous client for a jobtail server, on httpx.

Each request is signed with the AK/SK scheme the Huawei SDKs use (`SDK-HMAC-SHA256`), or carries
`X-Auth-Token`. By default the server URL and the credentials come from the credentials file that
`jobtail serve` writes on first start (`DATA_DIR/credentials.json`); `JOBTAIL_URL` and
`JOBTAIL_CREDENTIALS` (a path) override them.

    with connect() as client:
        job = client.json("GET", f"/v2/{client.project_id}/training-jobs/{job_id}")
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from jobtail.auth.bootstrap import CREDENTIALS_FILE  # the file `jobtail serve` writes on first start
from jobtail.auth.signing import sign_request
from jobtail.settings import default_data_dir


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str
    project_id: str
    endpoint: str = ""

    @classmethod
    def load(cls, path: Path) -> Credentials:
        """Read a credentials file: `{"endpoint", "project_id", "access_key", "secret_key"}`."""
        data = json.loads(path.read_text("utf-8"))
        try:
            return cls(str(data["access_key"]), str(data["secret_key"]), str(data["project_id"]),
                       str(data.get("endpoint", "")))
        except (KeyError, TypeError):
            raise ValueError(f"{path} is not a jobtail credentials file") from None


def default_credentials_path() -> Path:
    """`JOBTAIL_CREDENTIALS`, else `credentials.json` in `JOBTAIL_DATA_DIR` or the default data directory."""
    if os.environ.get("JOBTAIL_CREDENTIALS"):
        return Path(os.environ["JOBTAIL_CREDENTIALS"]).expanduser()
    data_dir = Path(os.environ.get("JOBTAIL_DATA_DIR") or default_data_dir()).expanduser()
    return data_dir / CREDENTIALS_FILE


class SignatureAuth(httpx.Auth):
    """Signs each request with SDK-HMAC-SHA256 over Host, Content-Type and X-Project-Id (if set)."""

    requires_request_body = True

    def __init__(self, access_key: str, secret_key: str) -> None:
        self._access_key = access_key
        self._secret_key = secret_key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        signed = {"Host": request.headers["host"]}
        for name in ("Content-Type", "X-Project-Id"):
            if name in request.headers:
                signed[name] = request.headers[name]
        added = sign_request(request.method, request.url.raw_path.decode("ascii"), signed, request.content,
                             self._access_key, self._secret_key)
        request.headers.update(added)
        yield request


class TokenAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["X-Auth-Token"] = self._token
        yield request


class RequestFailed(Exception):
    """The server answered with an error: its status, `error_code`, `error_msg` and request id."""

    def __init__(self, status: int, code: str, message: str, request_id: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id


class Client:
    """A jobtail client; use `connect()` to build one from the environment and credentials file."""

    def __init__(self, url: str, *, credentials: Credentials | None = None, token: str | None = None,
                 project_id: str | None = None, timeout: float = 60.0) -> None:
        auth: httpx.Auth | None = None
        if token is not None:
            auth = TokenAuth(token)
        elif credentials is not None:
            auth = SignatureAuth(credentials.access_key, credentials.secret_key)
        self.project_id = project_id or (credentials.project_id if credentials else "")
        headers = {"X-Project-Id": self.project_id} if self.project_id else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), auth=auth, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request (`path` like `/v2/{project_id}/…`; `{project_id}` is filled in)."""
        return self.http.request(method, path.replace("{project_id}", self.project_id), **kwargs)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and return its JSON body; raises RequestFailed for an error status."""
        response = self.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise request_failed(response)
        return response.json() if response.content else None

    def follow(self, job_id: str, task_id: str = "worker-0", **options: Any) -> LogFollow:
        """Follow a task's log live: see `LogFollow` (options: offset, since, max_retries, retry_wait)."""
        return LogFollow(self, job_id, task_id, **options)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def connect(url: str | None = None, *, credentials_file: Path | None = None, token: str | None = None,
            project_id: str | None = None) -> Client:
    """A Client for `url` (else `JOBTAIL_URL`, else the credentials file's endpoint), signing with
    the credentials file (else `JOBTAIL_CREDENTIALS`, else `DATA_DIR/credentials.json`) or, when
    `token` is given, sending it as `X-Auth-Token` (the file is then optional)."""
    path = credentials_file or default_credentials_path()
    credentials = None
    if token is None or path.exists():
        credentials = Credentials.load(path)
    url = url or os.environ.get("JOBTAIL_URL") or (credentials.endpoint if credentials else "")
    if not url:
        raise ValueError("no server URL: pass one, set JOBTAIL_URL, or use a credentials file with an endpoint")
    return Client(url, credentials=credentials, token=token, project_id=project_id)


# -- live follow ----------------------------------------------------------------------------------


def request_failed(response: httpx.Response) -> RequestFailed:
    """The RequestFailed for an error response, from its ModelArts-style body when it has one."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    return RequestFailed(response.status_code, str(body.get("error_code", response.status_code)),
                         str(body.get("error_msg", response.text[:200])), response.headers.get("x-request-id", ""))


def _sse(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event type, data) for each complete Server-Sent Event; comments and partial events are dropped."""
    kind, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield kind, "\n".join(data)
            kind, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                kind = value
            elif name == "data":
                data.append(value)


class LogFollow:
    """Iterate `(offset_after, bytes)` for each `log` event of a task's live log stream
    (`…/logs/stream`), until its `end` event; then `reason` says why it ended (`task finished`,
    `job terminated`, `job abnormal`, `job deleted`, `server shutting down`) and `offset` is
    where a later follow would resume.

    Network errors (a dropped connection, a read timeout, a server that went away mid-stream)
    are retried up to `max_retries` times in a row, `retry_wait` seconds apart, each time
    resuming at the offset after the last byte yielded, so the bytes yielded are exactly the
    log's. Error responses (unknown job, 429 over the stream cap, ...) raise `RequestFailed`.
    `offset` (default: the log's first byte) or `since` (`10m`, ISO 8601, epoch ms) say where to start.
    With `timestamps`, `times` holds, after each item, when its bytes arrived: (offset, epoch
    seconds) from each offset on, one per append.
    """

    def __init__(self, client: Client, job_id: str, task_id: str, *, offset: int | None = None,
                 since: str | None = None, max_retries: int = 10, retry_wait: float = 1.0,
                 timestamps: bool = False) -> None:
        self.client = client
        self.path = f"/v2/{{project_id}}/training-jobs/{job_id}/tasks/{task_id}/logs/stream"
        self.offset = offset
        self.since = since
        self.timestamps = timestamps
        self.times: list[tuple[int, float]] = []
        self.reason: str | None = None
        self.reconnects = 0
        self._max_retries = max_retries
        self._retry_wait = retry_wait

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        failures = 0
        while self.reason is None:
            if self.offset is not None:
                params: dict[str, Any] = {"offset": self.offset}
            else:
                params = {"since": self.since} if self.since is not None else {}
            if self.timestamps:
                params["timestamps"] = "true"
            try:
                with self.client.http.stream("GET", self.path.replace("{project_id}", self.client.project_id),
                                             params=params) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise request_failed(response)
                    for kind, data in _sse(response.iter_lines()):
                        failures = 0
                        if kind == "log":
                            event = json.loads(data)
                            raw = event["text"].encode() if "text" in event else base64.b64decode(event["base64"])
                            self.offset = int(event["end"])
                            self.times = [(int(at), ms / 1000) for at, ms in event.get("times", ())]
                            yield self.offset, raw
                        elif kind == "end":
                            event = json.loads(data)
                            self.offset, self.reason = int(event["offset"]), str(event["reason"])
                            return
                failure: Exception = httpx.RemoteProtocolError("the stream closed without an end event")
            except httpx.TransportError as exc:
                failure = exc
            # The stream broke off: resume after the last byte yielded; at once the first time,
            # then every retry_wait seconds while no event gets through.
            failures += 1
            if failures > self._max_retries:
                raise failure
            if failures > 1:
                time.sleep(self._retry_wait)
            self.reconnects += 1
