"""A job's page, for a job the local executor really ran: command, phase, each task's exit code
and message, events, duration, and links to each task's log and to the merged view."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect
from support.viewer import ViewerServer, open_page, shot, start_viewer_server, stop_viewer_server, wait_for


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewerServer]:
    server = start_viewer_server(tmp_path_factory.mktemp("executor") / "data", "--executor", "local")
    yield server
    stop_viewer_server(server)


def test_a_failed_job_shows_its_tasks_events_and_logs(page: Page, running: ViewerServer) -> None:
    script = ("import os, sys, time; rank = int(os.environ['RANK']); print('hello from rank', rank, flush=True); "
              "time.sleep(0.3 * rank); sys.exit(3 if rank == 1 else 0)")
    command = f'{sys.executable} -c "{script}"'
    job = running.job("two-ranks", tasks=2, command=command)
    wait_for(lambda: running.admin.json("GET", f"/v2/{{project_id}}/training-jobs/{job}")["status"]["phase"] == "Failed",
             message="the job never failed")
    open_page(page, running, f"/p/{running.project}/jobs/{job}")
    expect(page.locator(".job-head h1")).to_have_text("two-ranks")
    expect(page.locator(".job-head .phase")).to_have_text("Failed")
    expect(page.locator(".facts .command")).to_have_text(command)
    expect(page.locator(".facts")).to_contain_text(re.compile(r"Duration\s*\d+s"))
    tasks = page.locator(".tasks-table tbody tr")
    expect(tasks).to_have_count(2)
    expect(tasks.nth(0).locator("td").nth(1)).to_have_text("0")
    expect(tasks.nth(1).locator("td").nth(1)).to_have_text("3")
    expect(tasks.nth(1)).to_contain_text("Exited with code 3.")
    events = page.locator(".events-table tbody")
    expect(events).to_contain_text("Training job is running.")
    expect(events).to_contain_text("[worker-1] Training finished. Exit code 3.")
    expect(events).to_contain_text("Training job failed: worker-1 failed first: Exited with code 3.")
    shot(page, "job-page")
    tasks.nth(1).get_by_role("link", name="log").click()
    expect(page).to_have_url(re.compile(rf"/jobs/{job}/logs/worker-1$"))
    expect(page.locator(".vp .row .tx", has_text="hello from rank 1")).to_be_visible()
    expect(page.locator(".status .mode")).to_have_text("Log complete: task finished")
    page.go_back()
    page.get_by_role("link", name="All task logs, merged").click()
    expect(page.locator(".vp .row .tx", has_text="hello from rank 0")).to_be_visible()
    expect(page.locator(".vp .row .tx", has_text="hello from rank 1")).to_be_visible()
    expect(page.locator(".status .mode")).to_have_text("Log complete: job failed")


def test_phases_update_without_a_reload(page: Page, running: ViewerServer) -> None:
    job = running.job("sleeper", command=f'{sys.executable} -c "import time; time.sleep(60)"')
    open_page(page, running, f"/p/{running.project}/jobs/{job}")
    expect(page.locator(".job-head .phase")).to_have_text("Running", timeout=15_000)
    page.get_by_role("button", name="Stop").click()
    page.get_by_role("button", name="Stop? Click again").click()
    expect(page.locator(".job-head .phase")).to_have_text("Terminated", timeout=30_000)
    expect(page.locator(".tasks-table tbody")).to_contain_text("Stopped by a terminate request")


def test_a_restarted_job_lists_its_attempts_with_links_to_where_each_began(page: Page, running: ViewerServer) -> None:
    command = 'echo "attempt $JOBTAIL_ATTEMPT here"; [ "$JOBTAIL_ATTEMPT" = 2 ] || kill -9 $$'
    body = {"kind": "job", "metadata": {"name": "restarted", "annotations": {"fault-tolerance/job-retry-num": "1"}},
            "algorithm": {"command": command}, "spec": {"resource": {"node_count": 1}}}
    job = running.admin.json("POST", "/v2/{project_id}/training-jobs", json=body)["metadata"]["id"]
    wait_for(lambda: running.admin.json("GET", f"/v2/{{project_id}}/training-jobs/{job}")["status"]["phase"]
             == "Completed", message="the job never completed")
    open_page(page, running, f"/p/{running.project}/jobs/{job}")
    rows = page.locator(".attempts-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("Killed by signal 9 (SIGKILL) (worker-0 failed first) — restarted")
    expect(rows.nth(1)).to_contain_text("Completed")
    rows.nth(1).get_by_role("link", name="worker-0").click()
    expect(page).to_have_url(re.compile(rf"/jobs/{job}/logs/worker-0#L\d+$"))
    expect(page.locator(".vp .row.hl .tx")).to_contain_text("worker-0 started (RANK 0 of 1, MASTER_PORT")
    expect(page.locator(".vp .row.hl .tx")).to_contain_text("attempt 2 of 2")
