"""`jobtail serve`'s own log: what the server says when clients misbehave, read from its output."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.identity import Key
from support.rawhttp import RawRequest
from support.serve import ServeProcess, jobtail

from jobtail.auth.signing import sign_request

GONE = "client went away before"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServeProcess]:
    served = ServeProcess(tmp_path / "data", "--log-level", "info")
    served.start()
    yield served
    served.stop()


def head(server: ServeProcess, key: Key, method: str, target: str, body: bytes, content_type: str) -> dict[str, str]:
    headers = {"Host": server.url.removeprefix("http://"), "Content-Type": content_type}
    return {**headers, **sign_request(method, target, headers, body, key.access_key, key.secret_key)}


def test_clients_that_go_away_are_one_info_line_each(server: ServeProcess) -> None:
    """Before, a client that hung up mid-body cost two tracebacks logged as an "unhandled error"."""
    credentials = json.loads(server.admin_credentials().read_text())
    key = Key(credentials["access_key"], credentials["secret_key"], credentials["project_id"])
    job = jobtail("admin", "job", "create", "--project", key.project_id, "--name", "j", "--data-dir",
                  str(server.data_dir)).strip()
    logs = f"/v2/{key.project_id}/training-jobs/{job}/tasks/worker-0/logs"
    body = b"x" * 1_000_000
    for target, content_type in [(logs + "?offset=0", "application/octet-stream"),  # checked before the body
                                 (f"/v2/{key.project_id}/training-job-searches", "application/json")]:  # after
        headers = {**head(server, key, "POST", target, body, content_type), "Content-Length": str(len(body))}
        with RawRequest(server.url, "POST", target, headers) as raw:
            raw.start().send(body[:1000])
            time.sleep(0.2)
    with RawRequest(server.url, "GET", logs + "/stream", head(server, key, "GET", logs + "/stream", b"",
                                                              "application/json")) as follower:
        assert follower.start().response_head().status == 200  # a follower, gone as soon as it is served
    deadline = time.monotonic() + 20
    while server.log.read_text().count(GONE) < 2:
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.05)
    time.sleep(0.5)  # anything else it would say about them
    output = server.log.read_text()
    gone = [line for line in output.splitlines() if GONE in line]
    assert gone == [f"INFO:     client went away before POST {logs} was read",
                    f"INFO:     client went away before POST /v2/{key.project_id}/training-job-searches was read"]
    assert "Traceback" not in output and "unhandled" not in output and "ERROR" not in output, output
