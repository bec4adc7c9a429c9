"""Search in the log viewer: the whole log through the search API, a result list with line
numbers, next and previous jumping to and highlighting each line, regex and ignore-case, and
"searched up to line N — continue" when the server stopped early."""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect
from support.viewer import ViewerServer, open_page, shot


def row(page: Page, line: int) -> Locator:
    return page.locator(".vp .row", has=page.locator(f"a.ln[href='#L{line}']"))


def search(page: Page, query: str) -> None:
    page.locator("input.search").fill(query)
    page.locator("input.search").press("Enter")


def test_search_lists_matches_and_jumps_to_each(page: Page, server: ViewerServer) -> None:
    job = server.job("search")
    log = b"".join(b"step %d ok\n" % i if i % 1000 else b"step %d \x1b[31mERROR\x1b[0m disk full\n" % i
                   for i in range(1, 20_001))
    server.append(job, log)
    open_page(page, server, server.log_page(job))
    expect(row(page, 20_000)).to_be_visible()
    search(page, "ERROR")
    results = page.locator(".results")
    expect(results.locator(".count")).to_have_text("20 matches · 1 of 20")
    expect(results.locator(".matches li").first).to_contain_text("1,000")
    expect(results.locator(".matches li").first.locator("mark")).to_have_text("ERROR")
    expect(results.locator(".done")).to_have_text("Searched the whole log.")
    expect(row(page, 1000)).to_have_class(re.compile(r"\bhl\b"))
    expect(row(page, 1000)).to_be_in_viewport()
    assert page.url.endswith("#L1000")
    results.get_by_role("button", name="↓").click()
    expect(row(page, 2000)).to_have_class(re.compile(r"\bhl\b"))
    page.locator("input.search").press("Enter")  # Enter again: the next match
    expect(row(page, 3000)).to_have_class(re.compile(r"\bhl\b"))
    page.locator("input.search").press("Shift+Enter")
    expect(row(page, 2000)).to_have_class(re.compile(r"\bhl\b"))
    results.locator(".matches li", has_text="15,000").click()
    expect(row(page, 15_000)).to_have_class(re.compile(r"\bhl\b"))
    expect(results.locator(".count")).to_have_text("20 matches · 15 of 20")
    current = results.locator(".matches li.current")  # with a line of context each side
    expect(current.locator(".mcontext .mline")).to_have_text(["14,999", "15,001"])
    expect(current.locator(".mcontext .mtext")).to_have_text(["step 14999 ok", "step 15001 ok"])
    shot(page, "search")


def test_regex_and_ignore_case(page: Page, server: ViewerServer) -> None:
    job = server.job("search-options")
    server.append(job, b"Loss=0.5\nloss=0.25\nLOSS=1.5\naccuracy=0.9\n")
    open_page(page, server, server.log_page(job))
    expect(row(page, 4)).to_be_visible()
    search(page, "loss")
    expect(page.locator(".results .count")).to_have_text("1 match · 1 of 1")
    page.get_by_role("button", name="Aa").click()
    page.locator(".search-form").get_by_role("button", name="Search").click()
    expect(page.locator(".results .count")).to_have_text("3 matches · 1 of 3")
    page.get_by_role("button", name=".*").click()
    search(page, r"loss=\d\.\d$")
    expect(page.locator(".results .count")).to_have_text("2 matches · 1 of 2")
    expect(page.locator(".results .matches li .mhit .mline")).to_have_text(["1", "3"])
    search(page, "(unclosed")
    expect(page.locator(".results .search-error")).to_be_visible()


def test_a_search_the_server_cut_short_continues(page: Page, server: ViewerServer) -> None:
    job = server.job("search-more")
    server.append(job, b"".join(b"match %d\n" % i for i in range(1, 451)))  # the viewer asks 200 at a time
    open_page(page, server, server.log_page(job))
    expect(row(page, 450)).to_be_visible()
    search(page, "match")
    results = page.locator(".results")
    expect(results.locator(".partial")).to_have_text("Searched up to line 200 — continue")
    results.get_by_role("button", name="continue").click()
    expect(results.locator(".partial")).to_have_text("Searched up to line 400 — continue")
    results.get_by_role("button", name="continue").click()
    expect(results.locator(".done")).to_have_text("Searched the whole log.")
    expect(results.locator(".count")).to_have_text(re.compile("^450 matches"))
