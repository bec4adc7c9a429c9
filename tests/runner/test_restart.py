"""`jobtail serve` killed with SIGKILL while jobs run, then started again: no orphans, Abnormal jobs."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from support.jobs import PY, all_gone, task_pids
from support.serve import wait_until_serving

from jobtail.client import Client, connect

SLEEPER = f"{PY} -c 'import os, time; print(\"pgid=%d\" % os.getpgid(0), flush=True); time.sleep(120)'"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(data_dir: Path, port: int, isolation: str) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "JOBTAIL_DATA_DIR": str(data_dir), "JOBTAIL_TERMINATE_GRACE_SECONDS": "1",
           "JOBTAIL_EXECUTOR_ISOLATION": isolation}
    env.pop("JOBTAIL_URL", None)
    server = subprocess.Popen([sys.executable, "-m", "jobtail", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", server)
        yield server
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)


def submit(client: Client, name: str) -> str:
    body = {"kind": "job", "metadata": {"name": name}, "algorithm": {"command": SLEEPER},
            "spec": {"resource": {"node_count": 2}}}
    return str(client.json("POST", "/v2/{project_id}/training-jobs", json=body)["metadata"]["id"])


def pgid_of(client: Client, job_id: str, task: str) -> int:
    deadline = time.monotonic() + 20
    while True:
        try:
            path = f"/v2/{{project_id}}/training-jobs/{job_id}/tasks/{task}/logs/preview"
            content = client.json("GET", path)["content"]
        except Exception:  # not generated yet
            content = ""
        found = re.search(r"^pgid=(\d+)$", content, re.M)
        if found:
            return int(found.group(1))
        assert time.monotonic() < deadline, f"{task} never reported its process group"
        time.sleep(0.05)


def supervisor(session: int) -> int:
    """The shim of the task whose session `session` is: its leader, or in a sandbox the leader
    bwrap's child (the shim is pid 1 of the task's pid namespace)."""
    with open(f"/proc/{session}/comm") as f:
        if f.read().strip() != "bwrap":
            return session
    [child] = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if parent_of(pid) == session]
    return child


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except OSError:
        return None


def wait_ended(client: Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while (job := client.json("GET", f"/v2/{{project_id}}/training-jobs/{job_id}"))["status"]["phase"] == "Running":
        assert time.monotonic() < deadline, "recovery never ended the job"
        time.sleep(0.05)
    return job  # type: ignore[no-any-return]


@pytest.mark.parametrize("isolation", ["bwrap", "none"])
def test_a_killed_server_leaves_no_orphans_and_its_jobs_become_abnormal(tmp_path: Path, isolation: str) -> None:
    port = free_port()
    url, credentials = f"http://127.0.0.1:{port}", tmp_path / "credentials.json"
    with serving(tmp_path, port, isolation) as server, connect(url, credentials_file=credentials) as client:
        calm, hard = submit(client, "calm"), submit(client, "hard")
        for job in (calm, hard):
            for task in ("worker-0", "worker-1"):
                pgid_of(client, job, task)  # it runs
        trees = {job: task_pids(job) for job in (calm, hard)}
        # For `hard`, the task supervisors die with the server (as if an OOM killer took them all):
        # stopped first, so that neither they nor the server can react; only recovery can clean up.
        # In a sandbox a dead shim takes its whole pid namespace with it, so there they stay stopped.
        sessions = json.loads((tmp_path / "runner" / f"{hard}.json").read_text())["sessions"].values()
        shims = [supervisor(session) for session in sessions]
        for pid in shims:
            os.kill(pid, signal.SIGSTOP)
        server.kill()
        server.wait()
        if isolation == "none":
            for pid in shims:
                os.kill(pid, signal.SIGKILL)
        assert all_gone(trees[calm]), "a task of the calm job outlived the server"  # each supervisor stopped its task
        assert len(task_pids(hard) - set(shims)) >= 2  # orphans, until the next start

    with serving(tmp_path, port, isolation), connect(url, credentials_file=credentials) as client:
        for job_id in (calm, hard):
            job = wait_ended(client, job_id)  # recovery runs as the executor starts
            assert job["status"]["phase"] == "Abnormal"
            message = job["status"]["task_statuses"][0]["message"]
            assert message.startswith(f"The jobtail server running this job stopped (process {server.pid} on ")
            assert message.endswith("; its processes were stopped.")
            events = client.json("GET", f"/v2/{{project_id}}/training-jobs/{job_id}/events")["events"]
            assert (events[-1]["level"], events[-1]["message"]) == ("Error", message)
            log = client.json("GET", f"/v2/{{project_id}}/training-jobs/{job_id}/tasks/worker-1/logs/preview")
            assert log["content"].endswith(message + "\n")  # written before the job was marked
        assert all_gone(trees[hard] | set(shims)), "recovery left a process of the hard job running"
        assert not list((tmp_path / "runner").glob("*.json"))


def test_an_abnormal_jobs_duration_ends_when_the_server_died_not_when_it_came_back(tmp_path: Path) -> None:
    port = free_port()
    with serving(tmp_path, port, "bwrap") as server, connect(f"http://127.0.0.1:{port}",
                                                    credentials_file=tmp_path / "credentials.json") as client:
        job_id = submit(client, "cut-short")
        pgid_of(client, job_id, "worker-1")  # both tasks run
        time.sleep(2.5)  # a few heartbeats
        killed_at = time.time()
        server.kill()
        server.wait()
    time.sleep(6)  # the server is down for a while before it comes back
    with serving(tmp_path, port, "bwrap"), connect(f"http://127.0.0.1:{port}",
                                          credentials_file=tmp_path / "credentials.json") as client:
        job = wait_ended(client, job_id)
        restarted_at = time.time()
    status = job["status"]
    assert status["phase"] == "Abnormal"
    ended_at = (status["start_time"] + status["duration"]) / 1000
    assert ended_at <= killed_at + 0.5, "the duration ran on after the server died"
    assert ended_at >= killed_at - 5, "the job ran until the server died"  # last heartbeat: ~1 s before
    assert restarted_at - killed_at >= 6


def test_a_job_whose_annotations_allow_it_is_restarted_after_the_server_died(tmp_path: Path) -> None:
    port = free_port()
    url, credentials = f"http://127.0.0.1:{port}", tmp_path / "credentials.json"
    command = '[ "$JOBTAIL_ATTEMPT" = 2 ] && echo second attempt && exit 0; echo "pgid=$$"; sleep 120'
    body = {"kind": "job", "metadata": {"name": "again", "annotations": {"fault-tolerance/job-retry-num": "1"}},
            "algorithm": {"command": command}, "spec": {"resource": {"node_count": 1}}}
    with serving(tmp_path, port, "bwrap") as server, connect(url, credentials_file=credentials) as client:
        job_id = str(client.json("POST", "/v2/{project_id}/training-jobs", json=body)["metadata"]["id"])
        pgid_of(client, job_id, "worker-0")
        server.kill()
        server.wait()
    with serving(tmp_path, port, "bwrap"), connect(url, credentials_file=credentials) as client:
        job = wait_ended(client, job_id)
        assert job["status"]["phase"] == "Completed"
        first, second = job["status"]["running_records"]
        assert first["end_recover"] == "job_reschedule" and second["start_type"] == "restarted"
        assert first["end_reason"].startswith(f"the jobtail server running it stopped (process {server.pid} on ")
        log = client.json("GET", f"/v2/{{project_id}}/training-jobs/{job_id}/tasks/worker-0/logs/preview")["content"]
        assert re.search(r"its processes were stopped; restarting the job\.\n.*\n.*second attempt\n", log)
        events = [e["message"] for e in client.json("GET", f"/v2/{{project_id}}/training-jobs/{job_id}/events")["events"]]
        assert any(e.startswith("Training job restarted (attempt 2 of 2) because the jobtail server running it "
                                "stopped (process ") for e in events)
