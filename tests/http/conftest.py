"""Live-server fixtures for the HTTP tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from support.engine import Engine
from support.identity import SecureServer
from support.live import LiveServer, run_server

from jobtail.auth import manage
from jobtail.auth.authenticator import Authenticator
from jobtail.auth.secrets import load_master_key
from jobtail.auth.sql_store import SqlIdentityStore
from jobtail.core.store import PreviewEncoder
from jobtail.http.access import Guard, OpenGuard
from jobtail.http.guard import IdentityGuard
from jobtail.meta.database import open_database
from jobtail.settings import Settings


@pytest.fixture
def live_factory(tmp_path: Path, engine_factory: Callable[..., Engine]) -> Iterator[Callable[..., LiveServer]]:
    """Start live servers over the parametrised metadata backend; all stop at teardown.

    Everyone may do everything (`OpenGuard`) unless another `guard` is given: these servers test
    log and job semantics; `secure` is the one with real authentication."""
    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(guard: Guard | None = None, authenticator: Authenticator | None = None, **settings: object) -> LiveServer:
        options = {"data_dir": tmp_path, "seal_idle_seconds": 3600.0, **settings}
        config = Settings(**options)  # type: ignore[arg-type]

        def make(encoder: PreviewEncoder) -> Engine:
            return engine_factory(seal_bytes=config.seal_bytes, preview_bytes=config.preview_bytes,
                                  preview_encoder=encoder, preview_cache_bytes=config.preview_cache_bytes,
                                  follow_poll_seconds=config.follow_poll_seconds)

        server, thread, url, engine = run_server(config, make, guard or OpenGuard(), authenticator)
        running.append((server, thread))
        return LiveServer(url, engine, config)

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def live(live_factory: Callable[..., LiveServer]) -> LiveServer:
    return live_factory()


@pytest.fixture
def identity(meta_url: str) -> Iterator[SqlIdentityStore]:
    """The identity store in the parametrised metadata database (the one the live servers use),
    cached on PostgreSQL as a server's is."""
    database = open_database(meta_url)
    store = SqlIdentityStore(database.writer, database.reader, cache=True)
    yield store
    store.close()
    database.close()


@pytest.fixture
def secure(live_factory: Callable[..., LiveServer], identity: SqlIdentityStore, tmp_path: Path) -> SecureServer:
    """A live server behind the real IdentityGuard, with a project that has one two-task job."""
    master_key = load_master_key(tmp_path / "master.key")
    authenticator = Authenticator(identity, master_key)
    guard = IdentityGuard(authenticator)
    live = live_factory(guard=guard, authenticator=authenticator, executor="none")
    project = manage.create_project(identity, "secure").id
    job_id = live.create_job(project, "secure-job", node_count=2).id
    return SecureServer(live, guard, identity, master_key, project, job_id)
