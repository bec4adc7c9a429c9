"""Live-server fixtures for the HTTP tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from support.identity import SecureServer
from support.live import LiveServer, run_server

from jobtail.auth import manage
from jobtail.auth.secrets import load_master_key
from jobtail.core.store import LogStore
from jobtail.http.access import Guard, OpenGuard
from jobtail.http.guard import IdentityGuard
from jobtail.meta.identity import SqlIdentityStore, open_identity
from jobtail.settings import Settings


@pytest.fixture
def live_factory(tmp_path: Path, store_factory: Callable[..., LogStore]) -> Iterator[Callable[..., LiveServer]]:
    """Start live servers over the parametrised metadata backend; all stop at teardown.

    Everyone may do everything (`OpenGuard`) unless another `guard` is given: these servers test
    log and job semantics; `secure` is the one with real authentication."""
    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(guard: Guard | None = None, **settings: object) -> LiveServer:
        options = {"data_dir": tmp_path, "seal_idle_seconds": 3600.0, **settings}
        config = Settings(**options)  # type: ignore[arg-type]
        store = store_factory(seal_bytes=config.seal_bytes, preview_bytes=config.preview_bytes)
        server, thread, url = run_server(config, store, guard or OpenGuard())
        running.append((server, thread))
        return LiveServer(url, store, config)

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
    store = open_identity(meta_url, cache=True)
    yield store
    store.close()


@pytest.fixture
def secure(live_factory: Callable[..., LiveServer], identity: SqlIdentityStore, tmp_path: Path) -> SecureServer:
    """A live server behind the real IdentityGuard, with a project that has one two-task job."""
    master_key = load_master_key(tmp_path / "master.key")
    guard = IdentityGuard(identity, master_key)
    live = live_factory(guard=guard, executor="none")
    project = manage.create_project(identity, "secure").id
    job_id = live.store.create_job(project, "secure-job", node_count=2).id
    return SecureServer(live, guard, identity, master_key, project, job_id)
