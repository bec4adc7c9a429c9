"""Live-server fixtures for the HTTP tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from support.live import LiveServer, run_server

from jobtail.core.store import LogStore
from jobtail.http.access import Guard
from jobtail.settings import Settings


@pytest.fixture
def live_factory(tmp_path: Path, store_factory: Callable[..., LogStore]) -> Iterator[Callable[..., LiveServer]]:
    """Start live servers over the parametrised metadata backend; all stop at teardown."""
    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(guard: Guard | None = None, **settings: object) -> LiveServer:
        options = {"data_dir": tmp_path, "seal_idle_seconds": 3600.0, **settings}
        config = Settings(**options)  # type: ignore[arg-type]
        store = store_factory(seal_bytes=config.seal_bytes, preview_bytes=config.preview_bytes)
        server, thread, url = run_server(config, store, guard)
        running.append((server, thread))
        return LiveServer(url, store, config)

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def live(live_factory: Callable[..., LiveServer]) -> LiveServer:
    return live_factory()
