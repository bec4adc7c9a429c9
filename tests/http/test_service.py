"""`/healthz` (liveness: no backend asked) and `/healthz/ready` (readiness: the database and the
segment store answer), on real `jobtail serve` processes; liveness's own answer on a live server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
from support.live import LiveServer
from support.postgres import PostgresServer
from support.serve import clean_env, free_port, wait_until_serving

from jobtail import __version__


def _serve(tmp_path: Path, *options: str) -> tuple[str, subprocess.Popen[bytes]]:
    url = f"http://127.0.0.1:{free_port()}"
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "jobtail", "serve", "--executor", "none", "--data-dir",
                                 str(tmp_path / "data"), "--port", url.rsplit(":", 1)[1], *options], env=clean_env(),
                                stdout=out, stderr=subprocess.STDOUT)
    wait_until_serving(url, proc, 60, lambda: log.read_text()[-3000:])
    return url, proc


def test_ready_on_the_embedded_default(tmp_path: Path) -> None:
    url, proc = _serve(tmp_path)
    try:
        answer = httpx.get(url + "/healthz/ready")
        assert answer.status_code == 200 and answer.json()["status"] == "ready"
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_not_ready_while_the_database_is_gone_yet_alive(tmp_path: Path, postgres: PostgresServer) -> None:
    name = f"ready_{os.getpid()}_{time.monotonic_ns()}"
    url, proc = _serve(tmp_path, "--database-url", postgres.create_database(name))
    try:
        assert httpx.get(url + "/healthz/ready").status_code == 200
        with psycopg.connect(host="127.0.0.1", port=postgres.port, user="postgres", dbname="postgres",
                             autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')  # every connection of the replica ends
        answer = httpx.get(url + "/healthz/ready", timeout=30)
        assert answer.status_code == 503
        body = answer.json()
        assert body["error_code"] == "Jobtail.0503"
        assert body["error_msg"] == "Not ready: the database does not answer."  # which, never how
        assert len(body["request_id"]) == 32
        assert httpx.get(url + "/healthz").json()["status"] == "ok"  # liveness asks no backend
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_liveness_is_answered_before_the_router_as_the_route_would(live: LiveServer) -> None:
    """`Liveness` answers `/healthz` ahead of Starlette's stack: the same body, type and request id."""
    with live.client() as http:
        get = http.get("/healthz?from=probe")
        head = http.head("/healthz")
        wrong = http.put("/healthz")  # not ours: the router's 405
    assert get.status_code == 200 and get.json() == {"status": "ok", "version": __version__}
    assert get.headers["content-type"] == "application/json"
    assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", str(len(get.content)))
    assert len(get.headers["x-request-id"]) == 32 and get.headers["x-request-id"] != head.headers["x-request-id"]
    assert (wrong.status_code, wrong.json()["error_code"]) == (405, "ModelArts.2803")
