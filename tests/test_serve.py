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
        project = json.loads(credentials.read_text())["project_id"]
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
    assert f"its secret is in {tmp_path / 'credentials.json'}" in output
    assert (tmp_path / "jobtail.db").exists()


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
