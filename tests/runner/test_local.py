"""The local executor with real processes, driven over HTTP like a user drives it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from support.engine import backends_of
from support.jobs import (
    PROJECT,
    PY,
    all_gone,
    events,
    events_until,
    preview,
    reports_pgid,
    session_of,
    show,
    submit,
    task_pids,
    wait_for_text,
    wait_phase,
    wait_task_pids,
)
from support.live import LiveServer
from support.runners import Runners

from jobtail.core.types import JobRecord, TaskRef

sqlite_only = pytest.mark.parametrize("meta_url", ["sqlite"], indirect=True)
PLATFORM = r"\[ModelArts Service Log\]\[(INFO|WARN|ERROR)\]\[[0-9/ :,]+\] "


def script(tmp_path: Path, name: str, source: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return f"{PY} {path}"


def body_of(log: str) -> tuple[str, str, str]:
    """(start line, what the task printed, exit line) of a finished task log."""
    first, rest = log.split("\n", 1)
    printed, last = rest[: rest.rstrip("\n").rfind("\n") + 1], rest.rstrip("\n").rsplit("\n", 1)[-1]
    return first, printed, last


def test_two_workers_complete_and_each_log_holds_its_rank_in_order(runner: LiveServer, tmp_path: Path) -> None:
    command = script(tmp_path, "ranks.py", """
        import os, sys
        rank = os.environ["RANK"]
        for i in range(300):
            # stdout and stderr share one pipe, so their order survives
            print(f"rank {rank} line {i}", file=sys.stderr if i % 3 == 0 else sys.stdout)
    """)
    with runner.client() as http:
        job_id = submit(http, "ranks", command, workers=2)
        job = wait_phase(http, job_id)
        assert job["status"]["phase"] == "Completed"
        assert job["status"]["task_statuses"] == [
            {"task": "worker-0", "exit_code": 0, "message": "Exited with code 0."},
            {"task": "worker-1", "exit_code": 0, "message": "Exited with code 0."},
        ]
        for rank in (0, 1):
            start, printed, end = body_of(preview(http, job_id, f"worker-{rank}"))
            assert re.fullmatch(PLATFORM + rf"worker-{rank} started \(RANK {rank} of 2, MASTER_PORT \d+\) in .*: "
                                + re.escape(command), start)
            assert printed == "".join(f"rank {rank} line {i}\n" for i in range(300))
            assert re.fullmatch(PLATFORM + "exit with 0", end)
        messages = events_until(http, job_id, "Training job completed.")
    assert messages[:2] == ["Training job is created.", "Training job is running."]
    assert sorted(messages[2:4]) == ["[worker-0] Training started.", "[worker-1] Training started."]
    assert sorted(messages[4:6]) == ["[worker-0] Training finished. Exit code 0.",
                                     "[worker-1] Training finished. Exit code 0."]
    assert messages[6:] == ["Training job completed."]
    # the task logs were sealed when the tasks ended
    state = runner.store.state(TaskRef("0123456789abcdef0123456789abcdef", job_id, "worker-1"))
    assert state.sealed_offset == state.end_offset > 0


@sqlite_only
def test_a_failing_rank_fails_the_job_and_the_other_rank_is_stopped(runner: LiveServer, tmp_path: Path) -> None:
    command = script(tmp_path, "fail.py", """
        import os, sys, time
        print("pgid=%d" % os.getpgid(0), flush=True)
        if os.environ["RANK"] == "1":
            time.sleep(0.5)
            sys.exit(3)
        time.sleep(60)
    """)
    with runner.client() as http:
        job_id = submit(http, "fails", command, workers=2)
        wait_for_text(http, job_id, r"pgid=(\d+)", "worker-0")
        survivor = task_pids(job_id, "worker-0")
        job = wait_phase(http, job_id)
        assert job["status"]["phase"] == "Failed"
        worker0, worker1 = job["status"]["task_statuses"]
        assert worker1 == {"task": "worker-1", "exit_code": 3, "message": "Exited with code 3."}
        assert worker0["task"] == "worker-0" and worker0["exit_code"] == 143
        assert worker0["message"] == "Stopped because worker-1 failed; exit code 143 (SIGTERM)."
        assert all_gone(survivor, timeout=0.5)
        assert re.search(PLATFORM + "exit with 3\n$", preview(http, job_id, "worker-1"))
        assert re.search(PLATFORM + "stopped because worker-1 failed; exit with 143\n$", preview(http, job_id))
        messages = events_until(http, job_id, "Training job failed: worker-1 failed first: Exited with code 3.")
    assert "[worker-1] Training finished. Exit code 3." in messages
    assert "[worker-0] Training stopped. Exit code 143." in messages
    assert messages[-1] == "Training job failed: worker-1 failed first: Exited with code 3."


@sqlite_only
def test_terminate_stops_the_whole_tree_and_leaves_no_process(runners: Runners, tmp_path: Path) -> None:
    live = runners.start(terminate_grace_seconds=0.5)
    # The shell ignores SIGTERM (so does the sleep it starts: SIGKILL after the grace period is
    # needed) and starts a child in a session of its own, which must not escape either.
    command = reports_pgid("trap '' TERM; setsid sleep 60 & echo escaped=$!; sleep 60")
    with live.client() as http:
        job_id = submit(http, "stop-me", command)
        wait_for_text(http, job_id, r"escaped=(\d+)")
        tree = wait_task_pids(job_id, at_least=4)  # the shim, the shell, both sleeps (and bwrap)
        assert len({session_of(pid) for pid in tree}) == 2  # the escaped sleep leads a session of its own
        r = http.post(f"/v2/0123456789abcdef0123456789abcdef/training-jobs/{job_id}/actions",
                      json={"action_type": "terminate"})
        assert (r.status_code, r.json()["status"]["phase"]) == (202, "Terminating")
        started = time.monotonic()
        job = wait_phase(http, job_id)
        assert time.monotonic() - started < 5
        assert job["status"]["phase"] == "Terminated"
        [status] = job["status"]["task_statuses"]
        assert status["message"].startswith("Stopped by a terminate request; exit code 1")
        assert all_gone(tree, timeout=0.5, reaped=True)  # the whole tree was reaped: not even zombies
        events_until(http, job_id, "Training job is terminated.")
        assert not list((tmp_path / "data" / "runner").glob("*.json"))  # the run record is gone


@sqlite_only
def test_a_killed_supervisor_fails_the_job_and_its_task_is_killed(runner: LiveServer, tmp_path: Path) -> None:
    with runner.client() as http:
        job_id = submit(http, "oom", reports_pgid("sleep 60"))
        wait_for_text(http, job_id, r"pgid=(\d+)")
        tree = task_pids(job_id)
        [shim] = json.loads((tmp_path / "data" / "runner" / f"{job_id}.json").read_text())["sessions"].values()
        os.kill(shim, signal.SIGKILL)  # as an OOM killer might
        job = wait_phase(http, job_id)
        assert job["status"]["phase"] == "Failed"
        assert job["status"]["task_statuses"][0]["message"] == "Killed by SIGKILL; exit code 137."
        assert all_gone(tree, timeout=0.5)


def test_a_task_that_cannot_start_says_why_in_the_events_the_status_and_its_log(
    runner: LiveServer, tmp_path: Path
) -> None:
    """Whatever stops a process from starting — a missing working directory (an OSError), or a
    stored body create would refuse today (a NUL: ValueError) — the job fails and says why."""
    missing = tmp_path / "no-such-dir"
    with runner.client() as http:
        job_id = submit(http, "nowhere", "true", working_dir=str(missing))
        job = wait_phase(http, job_id)
        assert job["status"]["phase"] == "Failed"
        why = f"[Errno 2] No such file or directory: '{missing}'"
        assert job["status"]["task_statuses"] == [{"task": "worker-0", "exit_code": 127,
                                                   "message": f"Could not start: {why}."}]
        assert f"[worker-0] Could not start: {why}." in events(http, job_id)
        assert re.search(f"cannot start worker-0: {re.escape(why)}; exit with 127\n$", preview(http, job_id))

        document = {"kind": "job", "metadata": {"name": "nul"}, "algorithm": {"command": "echo a\0b"}}
        stored = JobRecord(str(uuid.uuid4()), PROJECT, "nul", ("worker-0",), int(time.time() * 1000), document,
                           executor="local")
        backends_of(runner.store).jobs.create_job(stored)  # past create's checks
        http.post(f"/v2/{PROJECT}/training-job-searches", json={})  # any request wakes the executor
        job = wait_phase(http, stored.id)
        assert job["status"]["phase"] == "Failed"
        assert job["status"]["task_statuses"][0]["message"] == "Could not start: embedded null byte."
        assert "[worker-0] Could not start: embedded null byte." in events(http, stored.id)
        assert "cannot start worker-0: embedded null byte; exit with 127\n" in preview(http, stored.id)


@sqlite_only
def test_deleting_a_running_job_stops_it(runner: LiveServer) -> None:
    with runner.client() as http:
        job_id = submit(http, "delete-me", reports_pgid("sleep 60"))
        wait_for_text(http, job_id, r"pgid=(\d+)")
        tree = task_pids(job_id)
        assert http.delete(f"/v2/0123456789abcdef0123456789abcdef/training-jobs/{job_id}").status_code == 202
        assert all_gone(tree)
        gone = http.get(f"/v2/0123456789abcdef0123456789abcdef/training-jobs/{job_id}")
        assert gone.json()["error_code"] == "ModelArts.2775"


@sqlite_only
def test_the_running_task_cap_keeps_later_jobs_pending(runners: Runners, tmp_path: Path) -> None:
    live = runners.start(max_running_tasks=2)
    gate = tmp_path / "gate"
    wait_for_gate = f"while [ ! -e {gate} ]; do sleep 0.05; done; echo through"
    with live.client() as http:
        first = submit(http, "first", wait_for_gate, workers=2)
        wait_phase(http, first, ("Running",))
        second = submit(http, "second", "echo second")
        time.sleep(1.0)  # several executor rounds
        assert show(http, second)["status"]["phase"] == "Pending"
        assert preview(http, second) == ""
        assert "Training job is waiting: 2 of 2 task slots are in use." in events(http, second)
        gate.touch()
        assert wait_phase(http, first)["status"]["phase"] == "Completed"
        assert wait_phase(http, second)["status"]["phase"] == "Completed"
        assert "second\n" in preview(http, second)
        # a job larger than the cap still runs, alone
        big = submit(http, "big", "echo big", workers=3)
        assert wait_phase(http, big)["status"]["phase"] == "Completed"


@sqlite_only
def test_a_pending_job_can_be_terminated(runners: Runners, tmp_path: Path) -> None:
    live = runners.start(max_running_tasks=1)
    with live.client() as http:
        blocker = submit(http, "blocker", "sleep 60")
        wait_phase(http, blocker, ("Running",))
        queued = submit(http, "queued", "echo never")
        wait_phase(http, queued, ("Pending",))
        r = http.post(f"/v2/0123456789abcdef0123456789abcdef/training-jobs/{queued}/actions",
                      json={"action_type": "terminate"})
        assert r.status_code == 202
        assert wait_phase(http, queued)["status"]["phase"] == "Terminated"
        assert preview(http, queued) == ""
        http.post(f"/v2/0123456789abcdef0123456789abcdef/training-jobs/{blocker}/actions",
                  json={"action_type": "terminate"})
        assert wait_phase(http, blocker)["status"]["phase"] == "Terminated"


@sqlite_only
def test_output_without_a_newline_reaches_the_preview_within_a_second(runner: LiveServer, tmp_path: Path) -> None:
    command = script(tmp_path, "partial.py", """
        import sys, time
        time.sleep(0.3)
        sys.stdout.write("progress 42%% at %.6f" % time.time())  # no newline, and the process lives on
        sys.stdout.flush()
        time.sleep(60)
    """)
    with runner.client() as http:
        job_id = submit(http, "partial", command)
        written = float(wait_for_text(http, job_id, r"progress 42% at (\d+\.\d+)", timeout=10).group(1))
        latency = time.time() - written
        assert latency < 1.0, f"the partial line took {latency:.2f} s to reach the preview"
        http.post(f"/v2/0123456789abcdef0123456789abcdef/training-jobs/{job_id}/actions",
                  json={"action_type": "terminate"})
        wait_phase(http, job_id)
        # the exit line starts on a line of its own
        assert re.search(r"progress 42% at \d+\.\d+\n" + PLATFORM, preview(http, job_id))


def test_a_fast_writer_ends_with_a_byte_identical_log(runners: Runners, tmp_path: Path) -> None:
    live = runners.start(seal_bytes=8 * 1024 * 1024)
    size = 50 * 1024 * 1024
    command = script(tmp_path, "flood.py", f"""
        import hashlib, os
        out, digest, left, n = os.fdopen(1, "wb", buffering=0), hashlib.sha256(), {size}, 0
        while left:
            block = hashlib.sha256(str(n).encode()).digest() * (1 + n % 4000)  # varied sizes, any byte
            block = block[:left]
            out.write(block)
            digest.update(block)
            left -= len(block)
            n += 1
        os.write(2, ("\\nsha256=" + digest.hexdigest() + "\\n").encode())
    """)
    with live.client() as http:
        job_id = submit(http, "flood", command)
        assert wait_phase(http, job_id, timeout=120)["status"]["phase"] == "Completed"
    ref = TaskRef("0123456789abcdef0123456789abcdef", job_id, "worker-0")
    state = live.store.state(ref)
    log = b"".join(live.store.read(live.store.state(ref), 0, state.end_offset))
    start_line_end = log.index(b"\n") + 1
    tail_start = log.rindex(b"\nsha256=")
    written = log[start_line_end:tail_start]
    expected = re.search(rb"sha256=([0-9a-f]{64})\n", log[tail_start:]).group(1).decode()  # type: ignore[union-attr]
    assert len(written) == size
    assert hashlib.sha256(written).hexdigest() == expected
    assert state.sealed_offset == state.end_offset  # sealed into segments as it grew and at the end
