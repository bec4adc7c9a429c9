"""A real jobtail server on a loopback socket, for tests where the transport matters."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from support.engine import Engine, open_engine

from jobtail.auth.authenticator import Authenticator
from jobtail.auth.links import link_key
from jobtail.auth.secrets import load_master_key
from jobtail.core.jobs import JobService
from jobtail.core.store import LogStore, PreviewEncoder
from jobtail.core.types import JobRecord
from jobtail.http.access import Guard, OpenGuard
from jobtail.http.app import create_app
from jobtail.services import Executor, Services, ServicesOpener
from jobtail.settings import Settings
from jobtail.wiring import maintenance_policy

EngineMaker = Callable[[PreviewEncoder], Engine]


@dataclass
class LiveServer:
    url: str
    engine: Engine
    settings: Settings

    @property
    def store(self) -> LogStore:
        return self.engine.store

    @property
    def jobs(self) -> JobService:
        return self.engine.jobs

    def create_job(self, project_id: str, name: str, *, node_count: int = 1, document: dict[str, Any] | None = None,
                   ) -> JobRecord:
        """A job that runs elsewhere (executor none): its tasks take appends."""
        return self.engine.create_job(project_id, name, node_count=node_count, document=document)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


def services_on(make_engine: EngineMaker, opened: list[Engine],
                authenticator: Authenticator | None = None) -> ServicesOpener:
    """What `jobtail.wiring.open_services` does, on an engine the test makes (and closes): its
    store's maintenance runs while the server does, and so does a local executor when the
    settings ask for one."""

    @contextmanager
    def opener(settings: Settings, encoder: PreviewEncoder) -> Iterator[Services]:
        engine = make_engine(encoder)
        opened.append(engine)
        engine.store.start(maintenance_policy(settings))
        executor: Executor | None = None
        local = None
        if settings.executor == "local":
            from jobtail.runner.local import LocalExecutor

            local = LocalExecutor(engine.jobs, engine.store, settings)
            local.start()
            executor = local
        try:
            key = link_key(load_master_key(Path(settings.master_key_file)))
            yield Services(engine.store, engine.jobs, key, authenticator, executor)
        finally:
            if local is not None:
                local.stop()
            engine.store.stop()

    return opener


def services_for(engine: Engine, authenticator: Authenticator | None = None) -> ServicesOpener:
    """Services on an engine that already runs (no maintenance of their own): for an app a
    test drives in-process beside a live server on the same engine."""

    @contextmanager
    def opener(settings: Settings, encoder: PreviewEncoder) -> Iterator[Services]:
        yield Services(engine.store, engine.jobs, link_key(load_master_key(Path(settings.master_key_file))),
                       authenticator)

    return opener


def run_server(settings: Settings, make_engine: EngineMaker, guard: Guard | None = None,
               authenticator: Authenticator | None = None) -> tuple[uvicorn.Server, threading.Thread, str, Engine]:
    """Start uvicorn serving the jobtail app on a free port in a thread; returns when it listens."""
    opened: list[Engine] = []
    app = create_app(settings, services_on(make_engine, opened, authenticator), guard=guard or OpenGuard())
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
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
    return server, thread, f"http://127.0.0.1:{port}", opened[0]


@contextmanager
def serving_sqlite(tmp_path: Path, database: Path, blobs: Path, **settings: object) -> Iterator[LiveServer]:
    """A live server (everyone may do everything) on a store in SQLite file `database` and blob
    directory `blobs`, wherever they are (a small tmpfs, say); the server and the store are closed
    when the block ends, so that what they live on can go afterwards."""
    config = Settings(data_dir=tmp_path / "data", executor="none", **settings)  # type: ignore[arg-type]

    def make(encoder: PreviewEncoder) -> Engine:
        return open_engine(f"sqlite:///{database}", blobs.as_uri(), seal_bytes=256 * 1024, preview_encoder=encoder)

    server, thread, url, engine = run_server(config, make, OpenGuard())
    try:
        yield LiveServer(url, engine, config)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        engine.close()
