"""The jobs list: newest first, phase filter, name search, paging, phases updating live, and stop
and delete only where the role allows them (the server refuses them anyway)."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect
from support.viewer import ViewerServer, open_page, shot


def test_newest_first_filter_search_and_paging(page: Page, server: ViewerServer) -> None:
    project, admin = server.new_project("listing")
    ids = [server.job(f"batch-{i}", client=admin) for i in range(23)]
    for job in ids[3:5]:
        admin.json("POST", f"/v2/{{project_id}}/training-jobs/{job}/actions", json={"action_type": "terminate"})
    user = server.user("viewer", {project: "viewer"})
    open_page(page, server, f"/p/{project}", user)
    names = page.locator(".jobs-table tbody .job-link")
    expect(names).to_have_count(20)
    expect(names.first).to_have_text("batch-22")
    expect(page.locator(".pager")).to_contain_text("Page 1 of 2 · 23 jobs")
    shot(page, "jobs")
    page.get_by_role("button", name="Older →").click()
    expect(names).to_have_text(["batch-2", "batch-1", "batch-0"])
    page.get_by_label("Phase").select_option("Terminated")
    expect(names).to_have_text(["batch-4", "batch-3"])
    expect(page.locator(".jobs-table .phase").first).to_have_text("Terminated")
    assert "phase=Terminated" in page.url
    page.get_by_label("Phase").select_option("")
    page.get_by_label("Name").fill("batch-1")
    expect(names).to_have_count(11)  # batch-1 and batch-10 … batch-19
    page.get_by_label("Name").fill("")
    expect(names).to_have_count(20)
    # A viewer sees no button it cannot use, and the server would refuse it anyway.
    expect(page.locator(".jobs-table button")).to_have_count(0)
    token = page.evaluate("JSON.parse(sessionStorage.getItem('jobtail.session')).token")
    refused = httpx.delete(f"{server.url}/v2/{project}/training-jobs/{ids[0]}", headers={"X-Auth-Token": token})
    assert (refused.status_code, refused.json()["error_code"]) == (403, "ModelArts.0108")
    names.filter(has_text="batch-22").click()  # nor on the job's page, nor to download its log
    expect(page.locator(".job-head h1")).to_have_text("batch-22")
    expect(page.locator(".job-head .actions button")).to_have_count(0)
    page.get_by_role("link", name="log", exact=True).click()
    expect(page.get_by_role("button", name="Time")).to_be_visible()
    expect(page.get_by_role("button", name="Download")).to_have_count(0)
    link = httpx.get(f"{server.url}/v2/{project}/training-jobs/{ids[22]}/tasks/worker-0/logs/url",
                     headers={"X-Auth-Token": token})
    assert link.status_code == 403


def test_phases_update_live_and_a_developer_stops_and_deletes(page: Page, server: ViewerServer) -> None:
    project, admin = server.new_project("actions")
    kept, stopped_elsewhere, removed = (server.job(name, client=admin) for name in ("kept", "elsewhere", "removed"))
    open_page(page, server, f"/p/{project}", server.user("developer", {project: "developer"}))
    rows = page.locator(".jobs-table tbody tr")
    expect(rows).to_have_count(3)
    elsewhere = rows.filter(has_text="elsewhere")
    expect(elsewhere.locator(".phase")).to_have_text("Running")
    admin.json("POST", f"/v2/{{project_id}}/training-jobs/{stopped_elsewhere}/actions", json={"action_type": "terminate"})
    expect(elsewhere.locator(".phase")).to_have_text("Terminated", timeout=15_000)  # without a reload
    expect(elsewhere.get_by_role("button", name="Stop")).to_have_count(0)  # nothing left to stop

    row = rows.filter(has_text="kept")
    row.get_by_role("button", name="Stop").click()
    expect(row.get_by_role("button", name="Stop? Click again")).to_be_visible()  # a second click confirms
    row.get_by_role("button", name="Stop? Click again").click()
    expect(row.locator(".phase")).to_have_text("Terminated")
    assert admin.json("GET", f"/v2/{{project_id}}/training-jobs/{kept}")["status"]["phase"] == "Terminated"

    row = rows.filter(has_text="removed")
    row.get_by_role("button", name="Delete").click()
    row.get_by_role("button", name="Delete? Click again").click()
    expect(rows.filter(has_text="removed")).to_have_count(0)
    expect(rows).to_have_count(2)
    missing = admin.request("GET", f"/v2/{{project_id}}/training-jobs/{removed}")
    assert missing.json()["error_code"] == "ModelArts.2775"
