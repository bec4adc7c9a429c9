"""Fixtures for the shipper: an in-process server behind the real IdentityGuard (SQLite), and
real `jobtail serve` processes that tests may kill and restart."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from support.live import run_server
from support.engine import new_job
from support.serve import IngestServer, ServeProcess

from jobtail.auth import manage
from jobtail.auth.secrets import load_master_key
from jobtail.client import Credentials
from jobtail.core.store import LogStore
from jobtail.http.guard import IdentityGuard
from support.engine import open_identity
from jobtail.settings import Settings
from jobtail.wiring import open_store


@pytest.fixture
def ingest_factory(tmp_path: Path) -> Iterator[Callable[..., IngestServer]]:
    """Start in-process servers on a SQLite database in `tmp_path` (settings may be given)."""
    running: list[tuple[uvicorn.Server, object, LogStore, IdentityGuard]] = []

    def start(**options: object) -> IngestServer:
        settings = Settings(**{"data_dir": tmp_path / "data", "executor": "none", "seal_idle_seconds": 3600.0,
                               **options})  # type: ignore[arg-type]
        store = open_store(settings)
        master_key = load_master_key(Path(settings.master_key_file))
        guard = IdentityGuard(open_identity(settings.database_url), master_key)
        server, thread, url = run_server(settings, store, guard)
        running.append((server, thread, store, guard))
        project = manage.create_project(guard.identity, f"ship{len(running)}").id
        job_id = new_job(store, project, "shipped", node_count=2).id
        issued = manage.create_credential(guard.identity, master_key, project_id=project, role="ingest", job_id=job_id)
        credentials = Credentials(issued.credential.access_key, issued.secret_key, project, url)
        path = tmp_path / f"ingest{len(running)}.json"
        path.write_text(json.dumps({"endpoint": url, "project_id": project, "access_key": credentials.access_key,
                                    "secret_key": credentials.secret_key}))
        return IngestServer(url, store, guard, master_key, project, job_id, credentials, path)

    yield start
    for server, thread, store, guard in running:
        server.should_exit = True
        thread.join(timeout=30)  # type: ignore[attr-defined]
        store.close()
        guard.close()


@pytest.fixture
def ingest(ingest_factory: Callable[..., IngestServer]) -> IngestServer:
    return ingest_factory()


@pytest.fixture
def serve_factory(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    started: list[ServeProcess] = []

    def make(*options: str, python: list[str] | None = None) -> ServeProcess:
        server = ServeProcess(tmp_path / "data", *options, python=python)
        started.append(server)
        return server

    yield make
    for server in started:
        server.kill()
