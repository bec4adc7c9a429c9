"""A real jobtail server on a loopback socket, for tests where the transport matters."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from jobtail.blobs.registry import open_blobs
from jobtail.core.store import LogStore
from jobtail.http.access import Guard, OpenGuard
from jobtail.meta.registry import open_meta
from jobtail.http.app import create_app
from jobtail.settings import Settings


@dataclass
class LiveServer:
    url: str
    store: LogStore
    settings: Settings

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


def run_server(settings: Settings, store: LogStore, guard: Guard | None = None) -> tuple[uvicorn.Server, threading.Thread, str]:
    """Start uvicorn serving the jobtail app on a free port in a thread; returns when it listens."""
    config = uvicorn.Config(create_app(settings, store=store, guard=guard), host="127.0.0.1", port=0,
                            log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    else:
        raise RuntimeError("server did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


@contextmanager
def serving_sqlite(tmp_path: Path, database: Path, blobs: Path, **settings: object) -> Iterator[LiveServer]:
    """A live server (everyone may do everything) on a store in SQLite file `database` and blob
    directory `blobs`, wherever they are (a small tmpfs, say); the server and the store are closed
    when the block ends, so that what they live on can go afterwards."""
    store = LogStore(open_meta(f"sqlite:///{database}"), open_blobs(blobs.as_uri()), seal_bytes=256 * 1024)
    config = Settings(data_dir=tmp_path / "data", executor="none", **settings)  # type: ignore[arg-type]
    server, thread, url = run_server(config, store, OpenGuard())
    try:
        yield LiveServer(url, store, config)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        store.close()
