"""The local executor's tasks by phase in /metrics (`jobtail_executor_tasks`), from a live server
that runs real processes: a running two-task job counts 2, and 0 once it has finished."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from support.jobs import PY, submit, wait_phase
from support.live import LiveServer


def running_tasks(http: httpx.Client) -> float:
    response = http.get("/metrics")
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "jobtail_executor_tasks" and sample.labels == {"phase": "running"}:
                return sample.value
    return -1.0


def wait_for(http: httpx.Client, count: float) -> None:
    deadline = time.monotonic() + 30
    while (found := running_tasks(http)) != count:
        assert time.monotonic() < deadline, f"jobtail_executor_tasks{{phase=running}} stayed {found}, not {count}"
        time.sleep(0.1)


def test_running_tasks_are_counted_until_they_end(runner: LiveServer, tmp_path: Path) -> None:
    release = tmp_path / "release"
    command = f"{PY} -c \"import os, time\nwhile not os.path.exists('{release}'): time.sleep(0.05)\""
    with runner.client() as http:
        job_id = submit(http, "metered", command, workers=2)
        wait_for(http, 2)
        release.touch()
        assert wait_phase(http, job_id)["status"]["phase"] == "Completed"
        wait_for(http, 0)
