"""`jobtail serve` as a user runs it: a real process with the embedded defaults."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support.filesystems import remount, tmpfs
from support.serve import free_port, wait_until_serving

from jobtail.client import connect


def test_serve_appends_previews_and_seals_idle_heads(tmp_path: Path) -> None:
    env = {**os.environ, "JOBTAIL_DATA_DIR": str(tmp_path), "JOBTAIL_SEAL_IDLE_SECONDS": "0.5"}
    env.pop("JOBTAIL_CREDENTIALS", None)
    env.pop("JOBTAIL_URL", None)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "jobtail", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(url, server)
        deadline = time.monotonic() + 30
        # First start: a default project and an admin credential, in a file only its owner reads.
        credentials = tmp_path / "credentials.json"
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        first = json.loads(credentials.read_text())
        project = first["project_id"]
        # ...and the admin's password there signs in to the viewer at once.
        signed_in = httpx.post(url + "/v3/auth/tokens", json={"auth": {"identity": {
            "methods": ["password"], "password": {"user": {"name": first["user"], "password": first["password"]}}}}})
        assert signed_in.status_code == 201 and signed_in.headers["X-Subject-Token"]
        created = subprocess.run(
            [sys.executable, "-m", "jobtail", "admin", "job", "create", "--project", project, "--name", "e2e"],
            env=env, capture_output=True, text=True, check=True,
        )
        job_id = created.stdout.strip()
        logs = f"/v2/{project}/training-jobs/{job_id}/tasks/worker-0/logs"
        assert httpx.get(url + logs + "/preview").status_code == 401
        http = connect(credentials_file=credentials)
        assert http.json("POST", logs, content=b"epoch 1\n") == {"full_size": 8}
        assert http.json("GET", logs + "/preview") == {"content": "epoch 1\n", "current_size": 8, "full_size": 8}
        segment_dir = tmp_path / "blobs" / "jobs" / job_id / "worker-0"
        while not (segment_dir.exists() and any(segment_dir.iterdir())):
            assert time.monotonic() < deadline + 30, "the idle head was never sealed"
            time.sleep(0.1)
        assert http.json("GET", logs + "/preview")["content"] == "epoch 1\n"
        http.close()
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    # uvicorn re-raises the signal once shut down, as a well-behaved process should.
    assert server.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert f"http://127.0.0.1:{port}" in output
    assert f"(for the viewer's sign-in) are in {tmp_path / 'credentials.json'}" in output
    assert first["password"] not in output  # a secret is never logged
    assert (tmp_path / "jobtail.db").exists()


@pytest.mark.parametrize("case", ["empty data dir", "used data dir", "database", "segment store"])
def test_serve_refuses_to_start_on_storage_it_cannot_write(tmp_path: Path, case: str) -> None:
    """A read-only data directory (or database, or segment directory) is one line at start and a
    non-zero exit, not a server whose every write is a 500."""
    readonly, data = tmp_path / "readonly", tmp_path / "data"
    with tmpfs(readonly, "8m"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBTAIL_")}
        env["JOBTAIL_DATA_DIR"] = str(data)
        if case in ("empty data dir", "used data dir"):
            env["JOBTAIL_DATA_DIR"] = str(readonly)
        if case == "used data dir":
            subprocess.run([sys.executable, "-m", "jobtail", "admin", "job", "create", "--project", "p-1", "--name",
                            "before"], env=env, check=True, capture_output=True)
            assert (readonly / "jobtail.db").exists()
        if case == "database":
            env["JOBTAIL_DATABASE_URL"] = f"sqlite:///{readonly / 'jobtail.db'}"
        if case == "segment store":
            env["JOBTAIL_BLOB_URL"] = (readonly / "blobs").as_uri()
        remount(readonly, "ro")
        started = subprocess.run([sys.executable, "-m", "jobtail", "serve", "--port", str(free_port())], env=env,
                                 capture_output=True, text=True, timeout=60)
    output = (started.stdout + started.stderr).strip()
    assert started.returncode == 1, output
    assert "Traceback" not in output
    what = {"empty data dir": f"the data directory {readonly}", "used data dir": f"the data directory {readonly}",
            "database": f"the database sqlite:///{readonly / 'jobtail.db'}",
            "segment store": f"the segment store file://{readonly / 'blobs'}"}[case]
    assert output.splitlines() == [output]
    assert output.startswith(f"Error: The log store cannot write to {what}: "), output
    assert "ead-only" in output or "unable to open" in output, output


def test_the_data_directory_and_its_secrets_are_private(tmp_path: Path) -> None:
    """Mode 700 for the data directory, 600 for the master key, the admin credential and the
    SQLite database with its WAL and shared-memory files (issue 14: only the server reads them)."""
    data_dir = tmp_path / "fresh" / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBTAIL_")}
    port = free_port()
    argv = [sys.executable, "-m", "jobtail", "serve", "--data-dir", str(data_dir), "--port", str(port)]
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", server)
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        for name in ("master.key", "credentials.json", "jobtail.db", "jobtail.db-wal", "jobtail.db-shm"):
            assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600, name
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
