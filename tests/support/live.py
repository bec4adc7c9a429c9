"""A real jobtail server on a loopback socket, for tests where the transport matters."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import httpx
import uvicorn

from jobtail.core.store import LogStore
from jobtail.http.access import Guard
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
