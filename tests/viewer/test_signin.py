"""Signing in with a user name and password, picking a project, deep links, and signing out
(which ends the token on the server). The token stays out of cookies."""

from __future__ import annotations

import json

import httpx
from playwright.sync_api import Page, expect
from support.viewer import PASSWORD, ViewerServer, shot

from jobtail.auth import manage


def sign_in(page: Page, name: str, password: str = PASSWORD) -> None:
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_sign_in_pick_a_project_and_sign_out(page: Page, server: ViewerServer) -> None:
    other, _ = server.new_project("second")
    name = server.user("viewer", {server.project: "viewer", other: "developer"})
    page.goto(server.url + "/")
    shot(page, "signin")
    sign_in(page, name, "wrong password")
    expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
    sign_in(page, name)
    projects = page.locator(".projects li")
    expect(projects).to_have_count(2)
    expect(projects.filter(has_text="default")).to_contain_text("viewer")
    expect(projects.filter(has_text="second")).to_contain_text("developer")
    assert page.context.cookies() == []  # the token is in this tab's sessionStorage, sent as X-Auth-Token
    token = json.loads(page.evaluate("sessionStorage.getItem('jobtail.session')"))["token"]
    projects.filter(has_text="default").locator("a").click()
    expect(page).to_have_url(f"{server.url}/p/{server.project}")
    expect(page.locator("header .user")).to_have_text(name)
    expect(page.locator("header .role")).to_have_text("viewer")
    page.get_by_label("Project").select_option(label=page.locator("select.project-picker option", has_text="second").inner_text())
    expect(page).to_have_url(f"{server.url}/p/{other}")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('jobtail.session')") is None
    refused = httpx.get(f"{server.url}/v3/auth/projects", headers={"X-Auth-Token": token})
    assert refused.status_code == 401  # signing out ended the token on the server


def test_one_project_opens_its_jobs_and_a_deep_link_comes_back_after_sign_in(page: Page, server: ViewerServer) -> None:
    name = server.user("developer")
    job = server.job("deep-link")
    server.append(job, b"deep link works\n")
    page.goto(server.url + "/")
    sign_in(page, name)
    expect(page).to_have_url(f"{server.url}/p/{server.project}")  # the only project: no picker
    page.evaluate("sessionStorage.clear()")
    page.goto(server.url + server.log_page(job) + "#L1")
    sign_in(page, name)
    expect(page).to_have_url(server.url + server.log_page(job) + "#L1")
    expect(page.locator(".vp .row .tx")).to_have_text("deep link works")


def test_a_revoked_token_leads_back_to_sign_in(page: Page, server: ViewerServer) -> None:
    name = server.user("developer")
    page.goto(server.url + "/")
    sign_in(page, name)
    expect(page.locator("h1", has_text="Jobs")).to_be_visible()
    manage.set_password(server.identity, name, "a new long password")  # ends every token of the user
    page.reload()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
