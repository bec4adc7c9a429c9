"""The lockout counted in PostgreSQL (jobtail.auth.shared_lockout): failures on any replica add
up, a lock holds on every replica and across restarts, and a successful request never touches
the database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event
from support.postgres import PostgresServer
from support.serve import clean_env, free_port, wait_until_serving

from jobtail.auth.authenticator import LOCKED_AK
from jobtail.auth.shared_lockout import SharedLockout
from jobtail.client import Client, Credentials
from jobtail.meta import open_database

AK, HERE, THERE = "AKAKAKAKAKAKAKAKAKAK", "10.0.0.1", "10.0.0.2"


def _eventually(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


@pytest.fixture
def engine(postgres: PostgresServer) -> Iterator[Engine]:
    url = postgres.create_database(f"lockout_{os.getpid()}_{time.monotonic_ns()}")
    open_database(url).close()  # the schema
    made = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    yield made
    made.dispose()


@pytest.fixture
def replicas(engine: Engine) -> Iterator[Callable[[], SharedLockout]]:
    opened: list[SharedLockout] = []

    def open_one() -> SharedLockout:
        lockout = SharedLockout(engine)
        opened.append(lockout)
        assert lockout.wait_live(10)
        return lockout

    yield open_one
    for lockout in opened:
        lockout.close()


def test_failures_on_several_replicas_add_up_and_lock_everywhere(replicas: Callable[[], SharedLockout]) -> None:
    a, b, c = replicas(), replicas(), replicas()
    for lockout in (a, b, a, b):
        lockout.failed(AK, HERE)
    _eventually(lambda: c._entries.get((AK, HERE), (0, 0.0))[0] == 4, "failures were not shared")
    assert not any(lockout.locked(AK, HERE) for lockout in (a, b, c))
    b.failed(AK, HERE)  # the fifth, on any replica
    _eventually(lambda: all(lockout.locked(AK, HERE) for lockout in (a, b, c)), "the lock did not reach every replica")
    assert not any(lockout.locked(AK, THERE) for lockout in (a, b, c))  # another address is not locked
    assert replicas().locked(AK, HERE)  # a replica started afterwards (a restart) loads it


def test_a_success_on_another_replica_resets_the_count(replicas: Callable[[], SharedLockout]) -> None:
    a, b = replicas(), replicas()
    for _ in range(4):
        a.failed(AK, HERE)
    _eventually(lambda: b._entries.get((AK, HERE), (0, 0.0))[0] == 4, "failures were not shared")
    b.succeeded(AK, HERE)
    _eventually(lambda: (AK, HERE) not in a._entries, "the reset was not shared")
    a.failed(AK, HERE)
    time.sleep(0.3)
    assert not a.locked(AK, HERE) and not b.locked(AK, HERE)


def test_a_successful_request_sends_no_statement(engine: Engine, replicas: Callable[[], SharedLockout]) -> None:
    lockout = replicas()
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    for _ in range(1000):
        assert not lockout.locked(AK, HERE)
        lockout.succeeded(AK, HERE)
    time.sleep(0.2)
    assert statements == []


# -- through real replicas ------------------------------------------------------------------------

class Serve:
    def __init__(self, tmp_path: Path, name: str, database_url: str) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = tmp_path / f"{name}.log"
        env = clean_env(JOBTAIL_DATABASE_URL=database_url, JOBTAIL_BLOB_URL=(tmp_path / "blobs").as_uri(),
                        JOBTAIL_MASTER_KEY_FILE=str(tmp_path / "master.key"))
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "jobtail", "serve", "--executor", "none", "--data-dir",
                                          str(tmp_path / name), "--port", self.url.rsplit(":", 1)[1], "--log-level",
                                          "warning"], env=env, stdout=out, stderr=subprocess.STDOUT)
        wait_until_serving(self.url, self.proc, 60, lambda: self.log.read_text()[-3000:])


def test_five_wrong_signatures_spread_over_replicas_lock_the_key_on_every_replica(
        tmp_path: Path, postgres: PostgresServer) -> None:
    url = postgres.create_database(f"lockout_http_{os.getpid()}_{time.monotonic_ns()}")
    servers = [Serve(tmp_path, "a", url)]
    try:
        servers += [Serve(tmp_path, "b", url), Serve(tmp_path, "c", url)]
        good = Credentials.load(tmp_path / "a" / "credentials.json")
        bad = Credentials(good.access_key, "W" * len(good.secret_key), good.project_id)
        job = "/v2/{project_id}/training-jobs/00000000-0000-4000-8000-000000000000"  # none: 2775 once admitted

        def answer(server: Serve, credentials: Credentials) -> Any:
            with Client(server.url, credentials=credentials) as client:
                return client.request("GET", job)

        def admitted(server: Serve) -> bool:
            return bool(answer(server, good).json()["error_code"] == "ModelArts.2775")

        assert all(admitted(server) for server in servers)
        for attempt in range(5):
            assert answer(servers[attempt % 3], bad).status_code == 401
        for server in servers:  # now the right secret, on every replica: locked
            _eventually(lambda s=server: not admitted(s), "a replica did not lock the key")  # type: ignore[misc]
            locked = answer(server, good)
            assert locked.json()["error_msg"] == LOCKED_AK, locked.text
    finally:
        for server in servers:
            server.proc.terminate()
            server.proc.wait(timeout=60)
