"""For the shipper's tests: an in-process server's handles, and real `jobtail` processes that
tests kill and restart (the chaos tests)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from jobtail.auth import manage
from jobtail.client import Client, Credentials
from jobtail.core.store import LogStore
from jobtail.core.types import TaskRef
from jobtail.http.guard import IdentityGuard


@dataclass
class IngestServer:
    """A live server; `project` has job `job_id` (tasks worker-0, worker-1); `credentials` is an
    ingest credential limited to that job, also written to `credentials_file`."""

    url: str
    store: LogStore
    guard: IdentityGuard
    master_key: bytes
    project: str
    job_id: str
    credentials: Credentials
    credentials_file: Path

    def client(self, credentials: Credentials | None = None) -> Client:
        return Client(self.url, credentials=credentials or self.credentials)

    def log(self, task: str = "worker-0", job_id: str | None = None) -> bytes:
        ref = TaskRef(self.project, job_id or self.job_id, task)
        return b"".join(self.store.read(self.store.state(ref), 0, 1 << 62))

    def key(self, role: str, job: str | None = None) -> Credentials:
        issued = manage.create_credential(self.guard.authenticator.identity, self.master_key, project_id=self.project, role=role,
                                          job_id=job)
        return Credentials(issued.credential.access_key, issued.secret_key, self.project, self.url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_serving(url: str, proc: subprocess.Popen[Any], timeout: float = 30.0,
                       output: Callable[[], str] = lambda: "") -> None:
    """Return once `url` answers /healthz; fail (with `output()`) if `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"jobtail serve did not come up:\n{output()}")
        time.sleep(0.05)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any JOBTAIL_* variable of the caller's, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBTAIL_")}
    return {**env, **extra}


def jobtail(*args: str, env: dict[str, str] | None = None) -> str:
    """Run a `jobtail` command to completion; its stdout."""
    done = subprocess.run([sys.executable, "-m", "jobtail", *args], env=env or clean_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


class ServeProcess:
    """`jobtail serve --executor none` on `data_dir` as a real process that tests kill and restart."""

    def __init__(self, data_dir: Path, *options: str, python: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.options = options
        self.python = python or [sys.executable, "-m", "jobtail"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"serve-{self.port}.log"
        self.starts = 0

    def start(self, *extra: str, wait: bool = True) -> None:
        argv = [*self.python, "serve", "--executor", "none", "--data-dir", str(self.data_dir), "--port",
                str(self.port), "--log-level", "warning", *self.options, *extra]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, env=clean_env(), stdout=log, stderr=log)
        self.starts += 1
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc is not None
        wait_until_serving(self.url, self.proc, timeout, lambda: self.log.read_text()[-3000:])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def admin_credentials(self) -> Path:
        return self.data_dir / "credentials.json"

    def project(self) -> str:
        return str(json.loads(self.admin_credentials().read_text())["project_id"])

    def ingest_credentials(self, job_id: str, path: Path) -> Path:
        """An ingest credential limited to `job_id`, minted with the CLI, as a credentials file."""
        out = jobtail("admin", "credential", "create", "--project", self.project(), "--role", "ingest", "--job",
                      job_id, "--json", "--data-dir", str(self.data_dir))
        path.write_text(json.dumps({**json.loads(out), "endpoint": self.url}))
        return path


def worker_pids(main: int) -> list[int]:
    """The worker processes of the `jobtail serve --workers N` whose main process is `main`: its
    children that multiprocessing spawned, not multiprocessing's resource tracker."""
    children: list[int] = []
    for task in Path(f"/proc/{main}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that just ended
            children += [int(pid) for pid in (task / "children").read_text().split()]
    workers = []
    for pid in children:
        with contextlib.suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.append(pid)
    return workers


def started_workers(main: int, count: int, timeout: float = 30.0) -> list[int]:
    """`worker_pids(main)` once `count` workers have started (fails after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while len(workers := worker_pids(main)) < count:
        assert time.monotonic() < deadline, f"only {workers} of {count} workers started"
        time.sleep(0.05)
    return workers
