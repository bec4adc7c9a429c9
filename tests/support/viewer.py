"""For the browser tests: a real `jobtail serve` with users, jobs and logs made over its own API,
and pages signed in as one of those users."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page
from support.engine import open_identity
from support.serve import ServeProcess

from jobtail.auth import manage
from jobtail.auth.sql_store import SqlIdentityStore
from jobtail.client import Client, Credentials
from jobtail.http.viewer import STATIC_DIR

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root in a container, without a GPU, and without Chromium's own calls home (this machine
# refuses them, many at a time).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
RESULTS = Path(__file__).resolve().parents[2] / "test-results" / "viewer"
PASSWORD = "a long enough password"
_names = itertools.count()


def missing_prerequisite() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (Debian package chromium; scripts/test installs it as root)"
    if not (STATIC_DIR / "index.html").is_file():
        return f"the viewer is not built into {STATIC_DIR} (cd web && npm ci && npm run build)"
    return None


@dataclass
class ViewerServer:
    """`jobtail serve` on a data directory of its own; `project` is its first project, `admin`
    a client signing with the admin credential it wrote."""

    serve: ServeProcess
    identity: SqlIdentityStore
    project: str
    admin: Client
    clients: list[Client] = field(default_factory=list)  # closed with the server

    @property
    def url(self) -> str:
        return self.serve.url

    def user(self, role: str = "developer", projects: dict[str, str] | None = None) -> str:
        """A new user with a password and `role` in the project (or the given project → role)."""
        name = f"{role}{next(_names)}-{os.getpid()}"
        manage.create_user(self.identity, name, PASSWORD)
        for project, granted in (projects or {self.project: role}).items():
            manage.grant(self.identity, name, project, granted)
        return name

    def new_project(self, name: str) -> tuple[str, Client]:
        """A project of its own (so a test sees only its jobs) and an admin client acting there."""
        project = manage.create_project(self.identity, f"{name}-{next(_names)}-{os.getpid()}").id
        manage.grant(self.identity, "admin", project, "admin")
        credentials = json.loads(self.serve.admin_credentials().read_text())
        client = Client(self.url, credentials=Credentials(credentials["access_key"], credentials["secret_key"],
                                                          project), project_id=project)
        self.clients.append(client)
        return project, client

    def session(self, name: str) -> dict[str, Any]:
        """What the page keeps in sessionStorage once `name` signed in."""
        r = httpx.post(self.url + "/v3/auth/tokens", timeout=30, json={"auth": {"identity": {
            "methods": ["password"], "password": {"user": {"name": name, "password": PASSWORD}}}}})
        assert r.status_code == 201, r.text
        token = r.headers["x-subject-token"]
        projects = httpx.get(self.url + "/v3/auth/projects", headers={"X-Auth-Token": token}, timeout=30).json()
        return {"token": token, "user": name, "projects": projects["projects"]}

    def job(self, name: str = "job", tasks: int = 1, client: Client | None = None, command: str = "python train.py") -> str:
        """A job (in the client's project, by default the first): with `--executor none` it runs
        elsewhere, Running until stopped, its logs coming in by append."""
        body = {"kind": "job", "metadata": {"name": name}, "algorithm": {"command": command},
                "spec": {"resource": {"node_count": tasks}}}
        return str((client or self.admin).json("POST", "/v2/{project_id}/training-jobs", json=body)["metadata"]["id"])

    def append(self, job_id: str, data: bytes, task: str = "worker-0") -> int:
        path = f"/v2/{{project_id}}/training-jobs/{job_id}/tasks/{task}/logs"
        sent = 0
        while sent < len(data):  # in bodies under the server's limit
            chunk = data[sent : sent + 8 * 1024 * 1024]
            size = int(self.admin.json("POST", path, content=chunk,
                                       headers={"Content-Type": "application/octet-stream"})["full_size"])
            sent += len(chunk)
        return size

    def log_page(self, job_id: str, task: str | None = "worker-0") -> str:
        tail = "" if task is None else f"/{task}"
        return f"/p/{self.project}/jobs/{job_id}/logs{tail}"


def start_viewer_server(data_dir: Path, *options: str) -> ViewerServer:
    data_dir.mkdir(parents=True, exist_ok=True)
    serve = ServeProcess(data_dir, *options)
    serve.start()
    credentials = json.loads(serve.admin_credentials().read_text())
    identity = open_identity(f"sqlite:///{data_dir / 'jobtail.db'}")
    admin = Client(serve.url, credentials=Credentials(credentials["access_key"], credentials["secret_key"],
                                                        credentials["project_id"]))
    return ViewerServer(serve, identity, credentials["project_id"], admin)


def stop_viewer_server(server: ViewerServer) -> None:
    for client in (server.admin, *server.clients):
        client.close()
    server.identity.close()
    server.serve.stop()


def open_page(page: Page, server: ViewerServer, path: str, user: str | None = None) -> dict[str, Any]:
    """Sign `user` (default: a new developer) in for this page and open `path`; returns the session."""
    session = server.session(user or server.user())
    page.add_init_script(f"sessionStorage.setItem('jobtail.session', {json.dumps(json.dumps(session))})")
    page.goto(server.url + path)
    return session


def shot(page: Page, name: str) -> Path:
    """A screenshot in test-results/viewer/, to look at what a user sees."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    page.screenshot(path=str(path))
    return path


def wait_for(condition: Any, timeout: float = 20.0, message: str = "condition never held") -> Any:
    """Poll a Python condition (not a page one: use Playwright's expect for those)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, message
        time.sleep(0.05)
