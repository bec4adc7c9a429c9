"""Following a task log through the preview: what is written when, against a live server."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from support.jobs import PROJECT
from support.runners import Runners

from jobtail.cli.follow import PreviewFollower, job_exit_code
from jobtail.client import Client
from jobtail.core.store import LogStore
from jobtail.core.types import TaskRef


@pytest.mark.parametrize("meta_url", ["sqlite"], indirect=True)
def test_the_follower_writes_finished_lines_and_the_rest_at_the_end(
        store_factory: Callable[..., LogStore], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runners = Runners(tmp_path, store_factory)
    try:
        live = runners.start(executor="none", preview_bytes=64)  # jobs run elsewhere; a tiny preview
        client = Client(live.url, project_id=PROJECT)
        created = client.json("POST", "/v2/{project_id}/training-jobs", json={"metadata": {"name": "f"}})
        job_id = created["metadata"]["id"]
        ref = TaskRef(PROJECT, job_id, "worker-0")
        out = io.BytesIO()
        follower = PreviewFollower(client, job_id, "worker-0", out)

        assert follower.round()["status"]["phase"] == "Running" and out.getvalue() == b""  # no log yet
        live.store.append(ref, b"line one\npartial")
        follower.round()
        assert out.getvalue() == b"line one\n"  # the unfinished line waits
        live.store.append(ref, " done\rbar 50% 中".encode())
        follower.round()
        assert out.getvalue() == b"line one\npartial done\r"  # a \r ends a redrawn progress bar
        follower.round()
        assert out.getvalue() == b"line one\npartial done\r"
        live.store.append(ref, b"\n" + b"x" * 99 + b"\n" + b"y" * 20 + b"\nlast")  # more than the preview holds
        follower.round()
        assert "bytes of worker-0's log scrolled out of the preview" in capsys.readouterr().err
        assert out.getvalue().endswith(b"partial done\r" + b"y" * 20 + b"\n")
        client.json("POST", f"/v2/{{project_id}}/training-jobs/{job_id}/actions", json={"action_type": "terminate"})
        ended = follower.run(interval=0.01)
        assert ended["status"]["phase"] == "Terminated"
        assert out.getvalue().endswith(b"\nlast")  # the job ended: the unfinished line is written too
        client.close()
    finally:
        runners.stop_all()


@pytest.mark.parametrize(("phase", "statuses", "code"), [
    ("Completed", [{"exit_code": 0, "message": "Exited with code 0."}], 0),
    ("Failed", [{"exit_code": 143, "message": "Stopped because worker-1 failed; exit code 143 (SIGTERM)."},
                {"exit_code": 3, "message": "Exited with code 3."}], 3),
    ("Terminated", [{"exit_code": 137, "message": "Stopped by a terminate request; exit code 137 (SIGKILL)."}], 137),
    ("Abnormal", [{"exit_code": -1, "message": "The jobtail server running this job stopped (…)."}], 1),
    ("Terminated", [], 1),
])
def test_a_job_exit_code_is_that_of_the_task_that_failed(phase: str, statuses: list[dict[str, object]],
                                                        code: int) -> None:
    assert job_exit_code({"status": {"phase": phase, "task_statuses": statuses}}) == code
