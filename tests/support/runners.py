"""Live servers whose local executor runs real processes (see tests/runner/conftest.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import uvicorn
from support.engine import Engine
from support.live import LiveServer, run_server

from jobtail.auth.authenticator import Authenticator
from jobtail.core.store import PreviewEncoder
from jobtail.http.access import Guard, OpenGuard
from jobtail.settings import Settings

REPOSITORY = Path(__file__).resolve().parents[2]


class Runners:
    """Starts live servers with `executor="local"` over the parametrised metadata backend
    (everyone may do everything unless a `guard` is given); `stop(server)` shuts one down
    gracefully, the rest stop at teardown. `data_dir` defaults to `tmp_path/data`; grace
    periods are short. Tasks run sandboxed (the default) and see the test's tmp_path and the
    repository (its examples) as shared directories, so scripts a test writes there run."""

    def __init__(self, tmp_path: Path, engine_factory: Callable[..., Engine]) -> None:
        self._tmp_path = tmp_path
        self.data_dir = tmp_path / "data"
        self._engine_factory = engine_factory
        self._running: dict[str, tuple[uvicorn.Server, threading.Thread]] = {}

    def start(self, guard: Guard | None = None, authenticator: Authenticator | None = None,
              **settings: object) -> LiveServer:
        options = {"data_dir": self.data_dir, "seal_idle_seconds": 3600.0, "executor": "local",
                   "terminate_grace_seconds": 1.0, "executor_shared_dirs": f"{self._tmp_path}:{REPOSITORY}", **settings}
        config = Settings(**options)  # type: ignore[arg-type]
        def make(encoder: PreviewEncoder) -> Engine:
            return self._engine_factory(seal_bytes=config.seal_bytes, preview_bytes=config.preview_bytes,
                                        preview_encoder=encoder, follow_poll_seconds=config.follow_poll_seconds,
                                        export_roots=config.export_root_paths,
                                        export_obs_urls=config.export_obs_url_list)

        server, thread, url, engine = run_server(config, make, guard or OpenGuard(), authenticator)
        self._running[url] = (server, thread)
        return LiveServer(url, engine, config)

    def stop(self, live: LiveServer) -> None:
        server, thread = self._running.pop(live.url)
        server.should_exit = True
        thread.join(timeout=60)
        assert not thread.is_alive(), "the server did not shut down"

    def stop_all(self) -> None:
        for url in list(self._running):
            server, thread = self._running.pop(url)
            server.should_exit = True
            thread.join(timeout=60)
