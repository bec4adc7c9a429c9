"""A log taller than any browser element can be (2 million lines: 36 million px at 18 px a line):
a scrollbar standing for the whole log, windowed fetching, and a bounded number of rows."""

from __future__ import annotations

from playwright.sync_api import Page, expect
from support.viewer import ViewerServer, open_page, shot

LINES = 2_000_000


def first_line_shown(page: Page) -> int:
    return int(page.locator(".status .range").inner_text().split()[1].split("–")[0].replace(",", ""))


def test_the_scrollbar_stands_for_the_whole_log(page: Page, server: ViewerServer) -> None:
    job = server.job("two-million")
    server.append(job, b"".join(b"%d\n" % i for i in range(1, LINES + 1)))
    open_page(page, server, server.log_page(job))
    rows = page.locator(".vp .row")
    expect(rows.filter(has=page.locator("a.ln[href='#L2000000']")).locator(".tx")).to_have_text("2000000")
    thumb = page.locator(".vp-thumb").bounding_box()
    bar = page.locator(".vp-bar").bounding_box()
    assert thumb is not None and bar is not None
    assert thumb["height"] >= 24 and abs((thumb["y"] + thumb["height"]) - (bar["y"] + bar["height"])) < 2

    # Drag the thumb to the middle of the track: the middle of the log is fetched and shown.
    page.mouse.move(thumb["x"] + thumb["width"] / 2, thumb["y"] + thumb["height"] / 2)
    page.mouse.down()
    page.mouse.move(thumb["x"] + thumb["width"] / 2, bar["y"] + bar["height"] / 2, steps=5)
    page.mouse.up()
    expect(page.locator(".status .mode")).to_contain_text("Following paused")
    page.wait_for_function("() => !document.querySelector('.vp .row.loading')")
    middle = first_line_shown(page)
    assert abs(middle - LINES / 2) < LINES * 0.05, middle
    for node in rows.all()[:5]:
        number, text = node.locator("a.ln").inner_text(), node.locator(".tx").inner_text()
        assert number.replace(",", "") == text
    shot(page, "big-log-middle")

    page.locator("input.jump").fill("1999999")
    page.locator("input.jump").press("Enter")
    expect(rows.filter(has=page.locator("a.ln[href='#L1999999']")).locator(".tx")).to_have_text("1999999")
    page.locator(".vp").press("Home")
    expect(rows.filter(has=page.locator("a.ln[href='#L1']")).locator(".tx")).to_have_text("1")
    assert page.locator(".vp-thumb").bounding_box()["y"] - bar["y"] < 2  # type: ignore[index]
    assert int(page.evaluate("document.querySelectorAll('.vp .row').length")) < 100
