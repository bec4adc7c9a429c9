"""Fixtures for the shipper: an in-process server behind the real IdentityGuard (SQLite), and
real `jobtail serve` processes that tests may kill and restart."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from support.engine import Engine, OwnedIdentity, new_job, open_engine, open_identity
from support.live import run_server
from support.serve import IngestServer, ServeProcess

from jobtail.auth import manage
from jobtail.auth.authenticator import Authenticator
from jobtail.auth.secrets import load_master_key
from jobtail.client import Credentials
from jobtail.core.store import PreviewEncoder
from jobtail.http.guard import IdentityGuard
from jobtail.settings import Settings


@pytest.fixture
def ingest_factory(tmp_path: Path) -> Iterator[Callable[..., IngestServer]]:
    """Start in-process servers on a SQLite database in `tmp_path` (settings may be given)."""
    running: list[tuple[uvicorn.Server, object, Engine, OwnedIdentity]] = []

    def start(**options: object) -> IngestServer:
        settings = Settings(**{"data_dir": tmp_path / "data", "executor": "none", "seal_idle_seconds": 3600.0,
                               **options})  # type: ignore[arg-type]
        master_key = load_master_key(Path(settings.master_key_file))
        identity = open_identity(settings.database_url)
        authenticator = Authenticator(identity, master_key)
        guard = IdentityGuard(authenticator)

        def make(encoder: PreviewEncoder) -> Engine:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            return open_engine(settings.database_url, settings.blob_url, seal_bytes=settings.seal_bytes,
                               preview_encoder=encoder)

        server, thread, url, engine = run_server(settings, make, guard, authenticator)
        store = engine.store
        running.append((server, thread, engine, identity))
        project = manage.create_project(identity, f"ship{len(running)}").id
        job_id = new_job(store, project, "shipped", node_count=2).id
        issued = manage.create_credential(identity, master_key, project_id=project, role="ingest", job_id=job_id)
        credentials = Credentials(issued.credential.access_key, issued.secret_key, project, url)
        path = tmp_path / f"ingest{len(running)}.json"
        path.write_text(json.dumps({"endpoint": url, "project_id": project, "access_key": credentials.access_key,
                                    "secret_key": credentials.secret_key}))
        return IngestServer(url, store, guard, master_key, project, job_id, credentials, path)

    yield start
    for server, thread, engine, identity in running:
        server.should_exit = True
        thread.join(timeout=30)  # type: ignore[attr-defined]
        engine.close()
        identity.close()


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
