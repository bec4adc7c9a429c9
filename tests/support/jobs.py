"""Helpers for tests of jobs that really run: submit over HTTP, wait for phases, inspect processes."""

from __future__ import annotations

import os
import re
import sys
import time
from typing import Any

import httpx

PROJECT = "0123456789abcdef0123456789abcdef"
TERMINAL = ("Completed", "Failed", "Terminated", "Abnormal")
PY = sys.executable  # tasks run Python through the shell: quote nothing fancy


def job_body(name: str, command: str, workers: int = 1, **algorithm: Any) -> dict[str, Any]:
    return {"kind": "job", "metadata": {"name": name},
            "algorithm": {"command": command, **algorithm},
            "spec": {"resource": {"node_count": workers}}}


def submit(http: httpx.Client, name: str, command: str, workers: int = 1, project: str = PROJECT,
           **algorithm: Any) -> str:
    r = http.post(f"/v2/{project}/training-jobs", json=job_body(name, command, workers, **algorithm))
    assert r.status_code == 201, r.text
    return str(r.json()["metadata"]["id"])


def show(http: httpx.Client, job_id: str, project: str = PROJECT) -> dict[str, Any]:
    r = http.get(f"/v2/{project}/training-jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def wait_phase(http: httpx.Client, job_id: str, phases: tuple[str, ...] = TERMINAL, timeout: float = 20.0,
               project: str = PROJECT) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = show(http, job_id, project)
        if job["status"]["phase"] in phases:
            return job
        assert time.monotonic() < deadline, f"job stayed {job['status']['phase']}, wanted {phases}"
        time.sleep(0.02)


def preview(http: httpx.Client, job_id: str, task: str = "worker-0", project: str = PROJECT) -> str:
    r = http.get(f"/v2/{project}/training-jobs/{job_id}/tasks/{task}/logs/preview")
    if r.status_code == 400 and r.json()["error_code"] == "ModelArts.2818":
        return ""
    assert r.status_code == 200, r.text
    return str(r.json()["content"])


def wait_for_text(http: httpx.Client, job_id: str, pattern: str, task: str = "worker-0", timeout: float = 20.0,
                  project: str = PROJECT) -> re.Match[str]:
    """Poll the preview until `pattern` (a regex) matches; returns the match."""
    deadline = time.monotonic() + timeout
    while True:
        found = re.search(pattern, preview(http, job_id, task, project))
        if found:
            return found
        assert time.monotonic() < deadline, f"{pattern!r} never appeared in {task}'s log"
        time.sleep(0.02)


def events(http: httpx.Client, job_id: str, project: str = PROJECT) -> list[str]:
    r = http.get(f"/v2/{project}/training-jobs/{job_id}/events", params={"limit": 100})
    return [e["message"] for e in r.json()["events"]]


def events_until(http: httpx.Client, job_id: str, last: str, timeout: float = 20.0,
                 project: str = PROJECT) -> list[str]:
    """The job's event messages once `last` is the newest: a job's final event is written just
    after its final phase, so a poller may see the phase first."""
    deadline = time.monotonic() + timeout
    while (messages := events(http, job_id, project))[-1:] != [last]:
        assert time.monotonic() < deadline, f"the newest event stayed {messages[-1:]}, wanted {last!r}"
        time.sleep(0.02)
    return messages


def live_pids(pgid: int | None = None, pid: int | None = None) -> list[int]:
    """Live (not zombie) processes in process group `pgid`, or the process `pid` if it is alive."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] in (b"Z", b"X"):
            continue
        if (pgid is not None and int(fields[2]) == pgid) or (pid is not None and int(name) == pid):
            found.append(int(name))
    return found


def group_gone(pgid: int, timeout: float = 5.0) -> bool:
    """True once no process of group `pgid` is left: killpg(pgid, 0) fails (zombies don't count)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if not live_pids(pgid=pgid):
            return True
        time.sleep(0.05)
    return False


def reports_pgid(command: str) -> str:
    """`command` prefixed by a line `pgid=N` naming the task's process group (as the task sees
    it: in a sandbox that is a pid of its own pid namespace; `task_pids` finds it from here)."""
    return f"{PY} -c 'import os; print(\"pgid=%d\" % os.getpgid(0))' && {command}"


def task_pids(job_id: str, task: str | None = None) -> set[int]:
    """Live (not zombie) processes of the job, or of one of its tasks, found as recovery finds
    them: by the JOBTAIL_JOB_ID (and JOBTAIL_TASK_ID) they were started with. In a sandbox these
    are bwrap, the shim (pid 1 inside) and the task's processes, by their pids here."""
    wanted = {f"JOBTAIL_JOB_ID={job_id}".encode()} | ({f"JOBTAIL_TASK_ID={task}".encode()} if task else set())
    found = set()
    for pid in live_pids_all():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if wanted <= set(f.read().split(b"\0")):
                    found.add(pid)
        except OSError:
            continue
    return found


def session_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[3])


def live_pids_all() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit() and live_pids(pid=int(name))]


def wait_task_pids(job_id: str, task: str | None = None, at_least: int = 1, timeout: float = 20.0) -> set[int]:
    """`task_pids` once there are `at_least` of them."""
    deadline = time.monotonic() + timeout
    while len(found := task_pids(job_id, task)) < at_least:
        assert time.monotonic() < deadline, f"job {job_id} has {len(found)} processes, wanted {at_least}"
        time.sleep(0.05)
    return found


def all_gone(pids: set[int], timeout: float = 5.0, reaped: bool = False) -> bool:
    """True once none of `pids` is alive any more (`reaped`: not even as a zombie)."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                if reaped or live_pids(pid=pid):
                    left.append(pid)
            except ProcessLookupError:
                pass
        if not left:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
