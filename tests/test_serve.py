"""`jobtail serve` as a user runs it: a real process with the embedded defaults."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support.filesystems import remount, tmpfs
from support.rawhttp import RawRequest
from support.serve import ServeProcess, free_port, jobtail, started_workers, wait_until_serving

from jobtail.client import Client, connect


def test_serve_appends_previews_and_seals_idle_heads(tmp_path: Path) -> None:
    env = {**os.environ, "JOBTAIL_DATA_DIR": str(tmp_path), "JOBTAIL_SEAL_IDLE_SECONDS": "0.5"}
    env.pop("JOBTAIL_CREDENTIALS", None)
    env.pop("JOBTAIL_URL", None)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "jobtail", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(url, server)
        deadline = time.monotonic() + 30
        # First start: a default project and an admin credential, in a file only its owner reads.
        credentials = tmp_path / "credentials.json"
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        first = json.loads(credentials.read_text())
        project = first["project_id"]
        # ...and the admin's password there signs in to the viewer at once.
        signed_in = httpx.post(url + "/v3/auth/tokens", json={"auth": {"identity": {
            "methods": ["password"], "password": {"user": {"name": first["user"], "password": first["password"]}}}}})
        assert signed_in.status_code == 201 and signed_in.headers["X-Subject-Token"]
        created = subprocess.run(
            [sys.executable, "-m", "jobtail", "admin", "job", "create", "--project", project, "--name", "e2e"],
            env=env, capture_output=True, text=True, check=True,
        )
        job_id = created.stdout.strip()
        logs = f"/v2/{project}/training-jobs/{job_id}/tasks/worker-0/logs"
        assert httpx.get(url + logs + "/preview").status_code == 401
        http = connect(credentials_file=credentials)
        assert http.json("POST", logs, content=b"epoch 1\n") == {"full_size": 8}
        assert http.json("GET", logs + "/preview") == {"content": "epoch 1\n", "current_size": 8, "full_size": 8}
        segment_dir = tmp_path / "blobs" / "jobs" / job_id / "worker-0"
        while not (segment_dir.exists() and any(segment_dir.iterdir())):
            assert time.monotonic() < deadline + 30, "the idle head was never sealed"
            time.sleep(0.1)
        assert http.json("GET", logs + "/preview")["content"] == "epoch 1\n"
        http.close()
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    # uvicorn re-raises the signal once shut down, as a well-behaved process should.
    assert server.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert f"http://127.0.0.1:{port}" in output
    assert f"(for the viewer's sign-in) are in {tmp_path / 'credentials.json'}" in output
    assert first["password"] not in output  # a secret is never logged
    assert (tmp_path / "jobtail.db").exists()


@pytest.mark.parametrize("case", ["empty data dir", "used data dir", "database", "segment store"])
def test_serve_refuses_to_start_on_storage_it_cannot_write(tmp_path: Path, case: str) -> None:
    """A read-only data directory (or database, or segment directory) is one line at start and a
    non-zero exit, not a server whose every write is a 500."""
    readonly, data = tmp_path / "readonly", tmp_path / "data"
    with tmpfs(readonly, "8m"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBTAIL_")}
        env["JOBTAIL_DATA_DIR"] = str(data)
        if case in ("empty data dir", "used data dir"):
            env["JOBTAIL_DATA_DIR"] = str(readonly)
        if case == "used data dir":
            subprocess.run([sys.executable, "-m", "jobtail", "admin", "job", "create", "--project", "p-1", "--name",
                            "before"], env=env, check=True, capture_output=True)
            assert (readonly / "jobtail.db").exists()
        if case == "database":
            env["JOBTAIL_DATABASE_URL"] = f"sqlite:///{readonly / 'jobtail.db'}"
        if case == "segment store":
            env["JOBTAIL_BLOB_URL"] = (readonly / "blobs").as_uri()
        remount(readonly, "ro")
        started = subprocess.run([sys.executable, "-m", "jobtail", "serve", "--port", str(free_port())], env=env,
                                 capture_output=True, text=True, timeout=60)
    output = (started.stdout + started.stderr).strip()
    assert started.returncode == 1, output
    assert "Traceback" not in output
    what = {"empty data dir": f"the data directory {readonly}", "used data dir": f"the data directory {readonly}",
            "database": f"the database sqlite:///{readonly / 'jobtail.db'}",
            "segment store": f"the segment store file://{readonly / 'blobs'}"}[case]
    assert output.splitlines() == [output]
    assert output.startswith(f"Error: The log store cannot write to {what}: "), output
    assert "ead-only" in output or "unable to open" in output, output


def test_the_data_directory_and_its_secrets_are_private(tmp_path: Path) -> None:
    """Mode 700 for the data directory, 600 for the master key, the admin credential and the
    SQLite database with its WAL and shared-memory files (issue 14: only the server reads them)."""
    data_dir = tmp_path / "fresh" / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBTAIL_")}
    port = free_port()
    argv = [sys.executable, "-m", "jobtail", "serve", "--data-dir", str(data_dir), "--port", str(port)]
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", server)
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        for name in ("master.key", "credentials.json", "jobtail.db", "jobtail.db-wal", "jobtail.db-shm"):
            assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600, name
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


# -- the real server's process model and transport ----------------------------------------------


def _job(server: ServeProcess, name: str) -> tuple[str, str]:
    """A new job on `server`; (its id, the path of its worker-0 log)."""
    project = server.project()
    job_id = jobtail("admin", "job", "create", "--project", project, "--name", name, "--data-dir",
                     str(server.data_dir)).strip()
    return job_id, f"/v2/{project}/training-jobs/{job_id}/tasks/worker-0/logs"


def _login(server: ServeProcess, password: str | None = None, **headers: str) -> httpx.Response:
    """The first start's admin signing in (with `password`, else the right one)."""
    first = json.loads(server.admin_credentials().read_text())
    return httpx.post(server.url + "/v3/auth/tokens", headers=headers, json={"auth": {"identity": {
        "methods": ["password"], "password": {"user": {"name": first["user"], "password": password or first["password"]}}}}})


def _connections(pid: int, port: int) -> int:
    """How many established TCP connections to `port` process `pid` holds (from /proc)."""
    established = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
            established.add(f"socket:[{fields[9]}]")
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            held.add(os.readlink(fd))
    return len(established & held)


def test_every_worker_runs_the_app_and_a_sigterm_ends_the_streams_of_each(tmp_path: Path) -> None:
    """`--workers 2`: each worker opens the app (lifespan startup) and shares its metrics with the
    other; on SIGTERM every open follow stream, whichever worker holds it, ends with `server
    shutting down`, and each worker closes the app (lifespan shutdown)."""
    server = ServeProcess(tmp_path / "data", "--workers", "2", "--log-level", "info")
    server.start()
    assert server.proc is not None
    clients: list[Client] = []
    try:
        workers = started_workers(server.proc.pid, 2)
        job_id, logs = _job(server, "two-workers")
        with connect(server.url, credentials_file=server.admin_credentials()) as writer:
            assert writer.json("POST", logs, content=b"hello\n") == {"full_size": 6}
        follows, events, held = [], [], [0, 0]
        while len(follows) < 8 or min(held) == 0:  # one connection each, until both workers hold some
            assert len(follows) < 64, held
            clients.append(connect(server.url, credentials_file=server.admin_credentials()))
            follows.append(clients[-1].follow(job_id, max_retries=0))
            events.append(iter(follows[-1]))
            assert next(events[-1]) == (6, b"hello\n")
            held = [_connections(pid, server.port) for pid in workers]
        assert sum(held) == len(follows), held
        scraped = httpx.get(server.url + "/metrics").text  # the workers' counts, summed
        assert f"\njobtail_follow_streams {len(follows)}.0\n" in scraped, [line for line in scraped.splitlines()
                                                                         if "follow" in line]
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        for follow, each in zip(follows, events, strict=True):
            assert list(each) == []
            assert follow.reason == "server shutting down" and follow.offset == 6
        assert server.proc.wait(timeout=30) in (0, -signal.SIGTERM)
        assert time.monotonic() - signalled < 5  # not the 10 s grace period
    finally:
        for client in clients:
            client.close()
        server.stop()
    assert server.log.read_text().count("Application shutdown complete") == 2


def test_http_as_clients_use_it_through_the_real_server(tmp_path: Path) -> None:
    """Keep-alive, `Expect: 100-continue`, Range, 304, a follow stream's slot freed when its
    client goes away, and the access log at `--log-level debug`."""
    server = ServeProcess(tmp_path / "data", "--log-level", "debug", "--max-streams-per-principal", "1")
    server.start()
    try:
        _, logs = _job(server, "transport")
        auth = {"X-Auth-Token": _login(server).headers["X-Subject-Token"]}
        # Keep-alive: three requests on one connection.
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() and conn.sock is not None
        sock = conn.sock
        for _ in range(2):
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            assert response.status == 200 and response.read()
            assert conn.sock is sock
        conn.close()
        # Expect: 100-continue: the server asks for the body, then stores it.
        body = b"epoch 1 loss 0.5\n"
        head = {"Host": f"127.0.0.1:{server.port}", **auth, "Content-Type": "application/octet-stream",
                "Content-Length": str(len(body)), "Expect": "100-continue"}
        with RawRequest(server.url, "POST", logs + "?offset=0", head) as raw:
            assert raw.start().response_head().status == 100
            assert raw.send(body)
            stored = raw.response()
        assert stored.status == 200 and json.loads(stored.body) == {"full_size": len(body)}
        # Range on the download link, and a 304 for an unchanged preview.
        link = httpx.get(server.url + logs + "/url", params={"Content-Type": "application/octet-stream"},
                         headers=auth).json()["obs_url"]
        part = httpx.get(link, headers={"Range": "bytes=6-11"})
        assert part.status_code == 206 and part.content == b"1 loss"
        assert part.headers["content-range"] == f"bytes 6-11/{len(body)}"
        preview = httpx.get(server.url + logs + "/preview", headers=auth)
        unchanged = httpx.get(server.url + logs + "/preview", headers={**auth, "If-None-Match": preview.headers["etag"]})
        assert unchanged.status_code == 304 and unchanged.content == b""
        # A client that goes away frees its stream slot (the cap is 1).
        with httpx.Client(base_url=server.url, headers=auth, timeout=10) as client:
            first = client.send(client.build_request("GET", logs + "/stream"), stream=True)
            assert first.status_code == 200
            assert client.get(logs + "/stream").status_code == 429
            first.close()
            deadline = time.monotonic() + 10
            while (again := client.send(client.build_request("GET", logs + "/stream"), stream=True)).status_code != 200:
                again.close()
                assert time.monotonic() < deadline, "the slot of the closed stream was never freed"
                time.sleep(0.05)
            again.close()
    finally:
        server.stop()
    assert '"GET /healthz HTTP/1.1" 200' in server.log.read_text()


def test_behind_a_proxy_on_this_host_the_lockout_counts_the_forwarded_client(tmp_path: Path) -> None:
    """From 127.0.0.1 (FORWARDED_ALLOW_IPS' default) `X-Forwarded-For` names the client: five wrong
    passwords lock that client out, not every client of the proxy."""
    server = ServeProcess(tmp_path / "data", "--rate-limit-per-second", "0")
    server.start()
    try:
        for _ in range(5):
            assert _login(server, "wrong", **{"X-Forwarded-For": "203.0.113.9"}).status_code == 401
        assert _login(server, **{"X-Forwarded-For": "203.0.113.9"}).status_code != 201
        assert _login(server, **{"X-Forwarded-For": "203.0.113.10"}).status_code == 201
    finally:
        server.stop()


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_killed_server_takes_its_workers_with_it_and_starts_again(tmp_path: Path) -> None:
    """SIGKILL of the supervisor of `--workers 2` (kill -9, the OOM killer) leaves no worker behind
    serving on the port and holding the log heads: the kernel kills them too, and a new server
    starts on the same port."""
    server = ServeProcess(tmp_path / "data", "--workers", "2")
    server.start()
    assert server.proc is not None
    workers: list[int] = []
    try:
        workers = started_workers(server.proc.pid, 2)
        server.kill()
        deadline = time.monotonic() + 10
        while not all(_gone(pid) for pid in workers):
            assert time.monotonic() < deadline, "a worker outlived its supervisor"
            time.sleep(0.05)
        server.start()
        _, logs = _job(server, "after-a-kill")
        with connect(server.url, credentials_file=server.admin_credentials()) as http:
            assert http.json("POST", logs, content=b"still here\n") == {"full_size": 11}
    finally:
        server.stop()
        for pid in workers:  # had the test failed: no orphan serves on after it
            with contextlib.suppress(OSError):
                if not _gone(pid) and b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
