"""Executor leases of replicas sharing a PostgreSQL database (jobtail.runner.leases): a replica
that stops renewing loses its jobs to a peer, and never runs or writes them again."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.jobs import PY
from support.postgres import PostgresServer
from support.serve import clean_env, free_port, wait_until_serving

from jobtail.client import Client, connect
from jobtail.meta import open_database
from jobtail.runner.leases import RENEW_SECONDS, SharedLease

LEASE = 3.0
TICKER = (f"{PY} -c 'import os, time\nprint(\"pid=%d\" % os.getpid(), flush=True)\n"
          "for i in range(100000): print(\"tick\", i, flush=True); time.sleep(0.05)'")


def test_a_peer_takes_over_a_lease_that_stands_still_and_its_owner_learns_it_lost(postgres: PostgresServer) -> None:
    database = open_database(postgres.create_database(f"leases_{os.getpid()}_{time.monotonic_ns()}"))
    try:
        owner, watchers = SharedLease(database.leases, 1.0), [SharedLease(database.leases, 1.0) for _ in range(2)]
        fence = owner.begin("host-a:1:100:7:aa", "host-a")
        for number, watcher in enumerate(watchers):
            watcher.begin(f"host-b:1:{200 + number}:7:bb", "host-b")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # renewing: nobody takes it
            assert owner.renew() and fence.valid()
            assert all(w.renew() for w in watchers)
            assert [w.lost_peers() for w in watchers] == [[], []]
            time.sleep(0.1)
        taken: list[list[tuple[str, str]]] = [[], []]
        deadline = time.monotonic() + 10
        while not any(taken) and time.monotonic() < deadline:  # the owner stops renewing
            watchers[0].renew(), watchers[1].renew()
            taken = [w.lost_peers() for w in watchers]
            time.sleep(0.1)
        assert sorted(taken) == [[], [("host-a:1:100:7:aa", "host-a")]]  # exactly one watcher took it
        assert not fence.valid()  # closed on its own, before the watcher took the lease
        assert not owner.renew() and fence.lost and not fence.wait()  # and now it stays closed
    finally:
        database.close()


class Replica:
    """`jobtail serve` with the local executor on the shared database and blob directory."""

    def __init__(self, tmp_path: Path, name: str, database_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = tmp_path / name
        self.log = tmp_path / f"{name}.log"
        env = clean_env(JOBTAIL_DATABASE_URL=database_url, JOBTAIL_BLOB_URL=(tmp_path / "blobs").as_uri(),
                        JOBTAIL_MASTER_KEY_FILE=str(tmp_path / "master.key"), JOBTAIL_OWNER_LEASE_SECONDS=str(LEASE),
                        JOBTAIL_EXECUTOR_ISOLATION="none", JOBTAIL_TERMINATE_GRACE_SECONDS="1")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "jobtail", "serve", "--data-dir", str(self.data_dir),
                                          "--port", str(self.port), "--log-level", "warning"], env=env,
                                         stdout=out, stderr=subprocess.STDOUT)
        wait_until_serving(self.url, self.proc, 60, lambda: self.log.read_text()[-3000:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
        self.proc.wait(timeout=60)


@pytest.fixture
def replicas(tmp_path: Path, postgres: PostgresServer) -> Iterator[list[Replica]]:
    url = postgres.create_database(f"replicas_{os.getpid()}_{time.monotonic_ns()}")
    started = [Replica(tmp_path, "a", url)]  # the first start makes the admin credential
    try:
        started.append(Replica(tmp_path, "b", url))
        yield started
    finally:
        for replica in started:
            replica.stop()


def _get(client: Client, path: str) -> Any:
    return client.json("GET", "/v2/{project_id}/training-jobs/" + path)


def _preview(client: Client, job_id: str) -> str:
    try:
        return str(_get(client, f"{job_id}/tasks/worker-0/logs/preview")["content"])
    except Exception:  # not generated yet
        return ""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def test_a_stopped_replica_loses_its_jobs_and_never_resumes_them(tmp_path: Path, replicas: list[Replica]) -> None:
    credentials = tmp_path / "a" / "credentials.json"
    with connect(replicas[0].url, credentials_file=credentials) as a, \
            connect(replicas[1].url, credentials_file=credentials) as b:
        body = {"kind": "job", "metadata": {"name": "ticker"}, "algorithm": {"command": TICKER},
                "spec": {"resource": {"node_count": 1}}}
        job_id, task_pid, owner, watcher = _run_ticker(replicas, (a, b), body)

        os.kill(owner.proc.pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        deadline = time.monotonic() + 30
        while (job := _get(watcher, job_id))["status"]["phase"] == "Running":
            assert time.monotonic() < deadline, "no replica took the lost replica's job"
            time.sleep(0.1)
        assert time.monotonic() - stopped_at >= LEASE - RENEW_SECONDS  # not before the lease ran out
        status = job["status"]
        assert status["phase"] == "Abnormal"
        message = status["task_statuses"][0]["message"]
        assert f"on host {os.uname().nodename[:64]} (process {owner.proc.pid} on " in message
        assert "did not renew its executor lease for 3 s" in message
        events = _get(watcher, f"{job_id}/events")["events"]
        assert (events[-1]["level"], events[-1]["message"]) == ("Error", message)
        log_then = _preview(watcher, job_id)
        assert log_then.endswith(message + "\n")
        assert _alive(task_pid)  # its task went on (into a full pipe) while its server was stopped

        os.kill(owner.proc.pid, signal.SIGCONT)  # the old owner comes back
        deadline = time.monotonic() + 15
        while _alive(task_pid):
            assert time.monotonic() < deadline, "the old owner did not stop the job it lost"
            time.sleep(0.1)
        time.sleep(2 * LEASE)  # room for any late write
        assert _preview(watcher, job_id) == log_then, "the old owner wrote to the task log after it lost the job"
        assert _get(watcher, f"{job_id}/events")["events"] == events
        assert _get(watcher, job_id)["status"] == status
        assert "executor lease of" in owner.log.read_text()  # it said so

        # Both replicas still run jobs: the one that came back registered afresh.
        for client, name in ((a, "after-a"), (b, "after-b")):
            quick = {**body, "metadata": {"name": name}, "algorithm": {"command": "echo done"}}
            new = str(client.json("POST", "/v2/{project_id}/training-jobs", json=quick)["metadata"]["id"])
            deadline = time.monotonic() + 30
            while _get(client, new)["status"]["phase"] != "Completed":
                assert time.monotonic() < deadline, "a replica stopped running jobs"
                time.sleep(0.1)


def _run_ticker(replicas: list[Replica], clients: tuple[Client, Client],
                body: dict[str, Any]) -> tuple[str, int, Replica, Client]:
    """Create the job through the first client and wait until its task ticks: (job id, the task's
    pid, the replica running it, a client of the other replica)."""
    job_id = str(clients[0].json("POST", "/v2/{project_id}/training-jobs", json=body)["metadata"]["id"])
    deadline = time.monotonic() + 30
    while not (found := re.search(r"^pid=(\d+)$", log := _preview(clients[0], job_id), re.M)) or "tick 5" not in log:
        assert time.monotonic() < deadline, "the job never ran"
        time.sleep(0.1)
    task_pid = int(found.group(1))
    owner = next(r for r in replicas if _is_ancestor(r.proc.pid, task_pid))
    return job_id, task_pid, owner, clients[1] if owner is replicas[0] else clients[0]


def _is_ancestor(ancestor: int, pid: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                pid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except OSError:
            return False
    return False


def test_a_lost_replicas_job_that_may_be_restarted_runs_its_next_attempt_on_the_peer(
    tmp_path: Path, replicas: list[Replica]
) -> None:
    credentials = tmp_path / "a" / "credentials.json"
    with connect(replicas[0].url, credentials_file=credentials) as a, \
            connect(replicas[1].url, credentials_file=credentials) as b:
        body = {"kind": "job", "metadata": {"name": "retried", "annotations": {"fault-tolerance/job-retry-num": "1"}},
                "algorithm": {"command": TICKER}, "spec": {"resource": {"node_count": 1}}}
        job_id, first_pid, owner, watcher = _run_ticker(replicas, (a, b), body)
        peer = next(r for r in replicas if r is not owner)

        os.kill(owner.proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 60
        while len(pids := [int(p) for p in re.findall(r"^pid=(\d+)$", _preview(watcher, job_id), re.M)]) < 2:
            assert time.monotonic() < deadline, "the peer never ran the lost job's next attempt"
            time.sleep(0.1)
        assert _is_ancestor(peer.proc.pid, pids[1])  # the second attempt runs on the peer
        status = _get(watcher, job_id)["status"]
        assert status["phase"] == "Running"  # across the restart, as on ModelArts
        first, second = status["running_records"][:2]
        assert (first["end_recover"], second["start_type"]) == ("job_reschedule", "restarted")

        os.kill(owner.proc.pid, signal.SIGCONT)  # the old owner comes back and stops its attempt
        deadline = time.monotonic() + 15
        while _alive(first_pid):
            assert time.monotonic() < deadline, "the old owner did not stop the attempt it lost"
            time.sleep(0.1)
        assert _get(watcher, job_id)["status"]["phase"] == "Running"  # the peer's attempt goes on
        assert _alive(pids[1])
