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
