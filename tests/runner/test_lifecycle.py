"""Several executors on one database, the lease, graceful shutdown, and recovery of dead runners."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from support.engine import jobs_of
from support.jobs import (
    PROJECT,
    all_gone,
    events,
    live_pids,
    preview,
    reports_pgid,
    submit,
    task_pids,
    wait_for_text,
    wait_phase,
)
from support.runners import Runners

from jobtail.core.store import LogStore
from jobtail.core.types import JobSpec, TaskRef
from jobtail.runner.owner import Owner
from jobtail.runner.recovery import RunRecords, recover

sqlite_only = pytest.mark.parametrize("meta_url", ["sqlite"], indirect=True)


def test_claims_are_exclusive(store: LogStore) -> None:
    service = jobs_of(store)
    job = service.create(PROJECT, JobSpec("contended", command="true"), "local")
    results: list[object] = []
    barrier = threading.Barrier(8)

    def claim(n: int) -> None:
        barrier.wait()
        results.append(service.transition(job, "Pending", owner=f"host:{n}:0:t"))

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert jobs_of(store).get(PROJECT, job.id).owner == winners[0].owner  # type: ignore[attr-defined]


def test_executors_of_two_hosts_run_each_job_exactly_once(runners: Runners, tmp_path: Path) -> None:
    hosts = [runners.start(data_dir=tmp_path / name) for name in ("host-a", "host-b")]
    clients = [h.client() for h in hosts]
    try:
        jobs = [submit(clients[n % 2], f"job-{n}", "echo ran once") for n in range(8)]
        owners = set()
        for job_id in jobs:
            job = wait_phase(clients[0], job_id)
            assert job["status"]["phase"] == "Completed"
            assert events(clients[1], job_id).count("Training job is running.") == 1
            assert preview(clients[0], job_id).count("worker-0 started") == 1
            owners.add(hosts[0].jobs.get(PROJECT, job_id).owner)
        assert 1 <= len(owners) <= 2
    finally:
        for c in clients:
            c.close()


@sqlite_only
def test_one_executor_per_data_directory_and_takeover(runners: Runners, tmp_path: Path) -> None:
    first = runners.start()
    lock = tmp_path / "data" / "runner" / "executor.lock"
    deadline = time.monotonic() + 5
    while not (lock.exists() and lock.read_text()):
        assert time.monotonic() < deadline, "the first executor never took the lease"
        time.sleep(0.01)
    second = runners.start()  # same data directory: its executor waits for the lease
    with second.client() as http:
        job_id = submit(http, "via-second", "echo hello")
        assert wait_phase(http, job_id)["status"]["phase"] == "Completed"
        assert jobs_of(first.store).get(PROJECT, job_id).owner == lock.read_text().strip()  # the lease holder ran it
        runners.stop(first)
        later = submit(http, "after-takeover", "echo still served")
        assert wait_phase(http, later, timeout=10)["status"]["phase"] == "Completed"
        assert jobs_of(second.store).get(PROJECT, later).owner == lock.read_text().strip()
        assert jobs_of(second.store).get(PROJECT, later).owner != jobs_of(second.store).get(PROJECT, job_id).owner


@sqlite_only
def test_graceful_shutdown_marks_running_jobs_abnormal_and_requeues_waiting_ones(runners: Runners) -> None:
    live = runners.start(max_running_tasks=1)
    with live.client() as http:
        running = submit(http, "running", reports_pgid("sleep 60"))
        wait_for_text(http, running, r"pgid=(\d+)")
        tree = task_pids(running)
        waiting = submit(http, "waiting", "echo finally")
        wait_phase(http, waiting, ("Pending",))
    runners.stop(live)
    assert all_gone(tree, timeout=0.5)
    job = jobs_of(live.store).get(PROJECT, running)
    assert job.phase == "Abnormal"
    assert [s.message for s in job.task_statuses] == [
        "Stopped because the jobtail server shut down; exit code 143 (SIGTERM)."]
    assert jobs_of(live.store).get(PROJECT, waiting).phase == "Creating"

    again = runners.start()
    with again.client() as http:
        assert events(http, running)[-1] == ("The jobtail server shut down while the job was running; "
                                             "its processes were stopped.")
        assert wait_phase(http, waiting)["status"]["phase"] == "Completed"
        assert any("the jobtail server that queued it shut down" in m for m in events(http, waiting))
        assert "finally\n" in preview(http, waiting)


def _marked_process(job_id: str, marked_child: bool) -> subprocess.Popen[bytes]:
    """A shell in a session of its own carrying the job's marker, with a child that carries it
    (or, with `marked_child=False`, has it removed)."""
    child = "sleep 60" if marked_child else "env -u JOBTAIL_JOB_ID sleep 61"
    return subprocess.Popen(["/bin/sh", "-c", f"{child} & wait"], start_new_session=True,
                            env={**os.environ, "JOBTAIL_JOB_ID": job_id})


@sqlite_only
def test_recovery_kills_only_provable_leftovers_and_marks_dead_owners_jobs(store: LogStore, tmp_path: Path) -> None:
    service = jobs_of(store)
    here = Owner.current()
    dead = Owner(here.host, here.namespace, os.getpid(), 1, "dead")  # wrong start time: not this process
    elsewhere = Owner("another-host", here.namespace, 1, 1, "x")
    other_namespace = Owner(here.host, here.namespace + 1, 1, 1, "x")  # a container with the same host name

    def job_in(phase: str, owner: Owner, name: str) -> str:
        job = service.create(PROJECT, JobSpec(name, node_count=2, command="true"), "local")
        assert service.transition(job, phase, expected=("Creating",), owner=str(owner)) is not None
        return job.id

    orphaned = job_in("Running", dead, "orphaned")
    queued = job_in("Pending", dead, "queued")
    remote = job_in("Running", elsewhere, "remote")
    contained = job_in("Running", other_namespace, "contained")
    mine = job_in("Running", Owner.current(), "alive")
    store.append(TaskRef(PROJECT, orphaned, "worker-0"), b"half a line")

    leftover = _marked_process(orphaned, marked_child=True)
    stranger = _marked_process("another-job", marked_child=True)  # same marker name, other job
    unmarked = _marked_process(orphaned, marked_child=False)
    try:
        time.sleep(0.2)
        records = RunRecords(tmp_path / "data" / "runner")
        records.write(orphaned, dead, {"worker-0": leftover.pid, "worker-1": stranger.pid, "x": unmarked.pid})
        assert recover(service, store, records) == [orphaned]
        assert leftover.wait(timeout=5) == -signal.SIGKILL
        assert stranger.poll() is None  # its session is recorded, but it carries another job's id
        assert unmarked.wait(timeout=5) == -signal.SIGKILL  # the shell carried the marker...
        assert live_pids(pgid=unmarked.pid)  # ...its child, in the same session without it, lives on
        assert not list((tmp_path / "data" / "runner").glob("*.json"))
    finally:
        for p in (leftover, stranger, unmarked):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()

    job = jobs_of(store).get(PROJECT, orphaned)
    message = f"The jobtail server running this job stopped (process {os.getpid()} on {dead.host}); " \
              "its processes were stopped."
    assert job.phase == "Abnormal"
    assert [(s.task, s.exit_code, s.message) for s in job.task_statuses] == [
        ("worker-0", -1, message), ("worker-1", -1, message)]
    log = b"".join(store.read(store.state(TaskRef(PROJECT, orphaned, "worker-0")), 0, 1 << 20)).decode()
    assert log.startswith("half a line\n[ModelArts Service Log][ERROR]") and log.endswith(message + "\n")
    assert jobs_of(store).get(PROJECT, queued).phase == "Creating" and jobs_of(store).get(PROJECT, queued).owner is None
    assert {jobs_of(store).get(PROJECT, j).phase for j in (remote, contained, mine)} == {"Running"}
