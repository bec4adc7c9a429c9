"""The log viewer of one task: opening at the newest line, scrolling, jumping, permalinks,
colours, carriage returns, text that looks like markup, toggles, download, hard logs."""

from __future__ import annotations

import re
import time

from playwright.sync_api import Locator, Page, expect
from support.viewer import ViewerServer, open_page, shot


def rows(page: Page) -> int:
    return int(page.evaluate("document.querySelectorAll('.vp .row').length"))


def row(page: Page, line: int) -> Locator:
    return page.locator(".vp .row", has=page.locator(f"a.ln[href='#L{line}']"))


def text_of(page: Page, line: int) -> Locator:
    return row(page, line).locator(".tx")


def test_opens_at_the_newest_line_and_scrolls_the_whole_log(page: Page, server: ViewerServer) -> None:
    job = server.job("newest")
    server.append(job, b"".join(b"step %d loss=%.3f\n" % (i, 1 / i) for i in range(1, 50_001)))
    open_page(page, server, server.log_page(job))
    expect(text_of(page, 50_000)).to_have_text("step 50000 loss=0.000")
    expect(page.locator(".status .range")).to_have_text(re.compile(r"Lines [\d,]+–50,000 of 50,000"))
    shot(page, "logview-newest")
    assert rows(page) < 100
    page.locator(".vp").hover()
    for _ in range(10):
        page.mouse.wheel(0, -1800)  # 100 lines each
    expect(row(page, 50_000)).to_have_count(0)
    expect(page.locator(".status .range")).not_to_have_text(re.compile("–50,000 of"))
    first_shown = int(page.locator(".status .range").inner_text().split()[1].split("–")[0].replace(",", ""))
    assert 48_000 < first_shown < 49_500
    expect(page.locator(".status .mode")).to_contain_text("Following paused")
    page.locator(".vp").press("Home")
    expect(text_of(page, 1)).to_have_text("step 1 loss=1.000")
    page.locator(".vp").press("End")
    expect(text_of(page, 50_000)).to_be_visible()
    assert rows(page) < 100


def test_jump_to_a_line_and_permalinks(page: Page, server: ViewerServer) -> None:
    job = server.job("jumps")
    server.append(job, b"".join(b"line %d\n" % i for i in range(1, 30_001)))
    path = server.log_page(job)
    open_page(page, server, path)
    expect(text_of(page, 30_000)).to_be_visible()
    page.locator("input.jump").fill("12,345")
    page.locator("input.jump").press("Enter")
    expect(text_of(page, 12_345)).to_have_text("line 12345")
    expect(row(page, 12_345)).to_have_class(re.compile(r"\bhl\b"))
    assert page.url.endswith("#L12345")
    row(page, 12_350).locator("a.ln").click()
    assert page.url.endswith("#L12350")
    expect(row(page, 12_350)).to_have_class(re.compile(r"\bhl\b"))
    page.goto(server.url + path + "#L777")  # a permalink opens the page at its line, highlighted
    expect(row(page, 777)).to_have_class(re.compile(r"\bhl\b"))
    expect(text_of(page, 777)).to_be_in_viewport()


def test_ansi_colours_and_styles(page: Page, server: ViewerServer) -> None:
    job = server.job("colours")
    server.append(job, (
        b"\x1b[31mred\x1b[0m plain\n"
        b"\x1b[1;4mbold underline\x1b[0m\n"
        b"\x1b[38;5;208morange256\x1b[0m \x1b[38;2;10;200;30mtruecolour\x1b[0m\n"
        b"\x1b[2;3mdim italic\x1b[0m \x1b[42;97mon green\x1b[0m\n"
        b"moved\x1b[2A cursor \x1b]0;title\x07kept\n"
    ))
    open_page(page, server, server.log_page(job))
    expect(text_of(page, 1)).to_have_text("red plain")

    def style(text: str, prop: str) -> str:
        span = page.locator(".vp .tx span", has_text=text).first
        return str(span.evaluate(f"e => getComputedStyle(e)[{prop!r}]"))

    assert style("red", "color") == "rgb(255, 123, 114)"
    assert style("bold underline", "fontWeight") == "700"
    assert "underline" in style("bold underline", "textDecorationLine")
    assert style("orange256", "color") == "rgb(255, 135, 0)"
    assert style("truecolour", "color") == "rgb(10, 200, 30)"
    assert style("dim italic", "fontStyle") == "italic" and float(style("dim italic", "opacity")) < 1
    assert style("on green", "backgroundColor") == "rgb(35, 134, 54)"
    expect(text_of(page, 5)).to_have_text("moved cursor kept")  # what one row cannot show is dropped
    shot(page, "logview-colours")


def test_progress_bars_show_their_final_state(page: Page, server: ViewerServer) -> None:
    job = server.job("progress")
    tqdm = "".join(f"\rEpoch 1: {p:3d}%|{'█' * (p // 10):<10}| {p}/100" for p in range(0, 101, 10))
    server.append(job, (
        "start\n"
        f"{tqdm}\n"
        "Downloading 10%\r\x1b[KDownloading done\n"
        "\x1b[32m1/3\x1b[0m loss 0.9\r\x1b[32m3/3\x1b[0m loss 0.1\n"
        "windows line\r\n"
        "end\n"
    ).encode())
    open_page(page, server, server.log_page(job))
    expect(text_of(page, 2)).to_have_text("Epoch 1: 100%|██████████| 100/100")
    expect(text_of(page, 3)).to_have_text("Downloading done")
    expect(text_of(page, 4)).to_have_text("3/3 loss 0.1")
    expect(text_of(page, 5)).to_have_text("windows line")
    expect(text_of(page, 6)).to_have_text("end")  # line numbers are those of the stored log


def test_log_text_is_never_markup(page: Page, server: ViewerServer) -> None:
    job = server.job("markup")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    lines = ["<img src=x onerror=alert(1)>", "<script>alert(2)</script>", '"><b onmouseover=alert(3)>x</b>',
             "&lt;entity&gt; &amp;", "\x1b[31m<img src=y onerror=alert(4)>\x1b[0m"]
    server.append(job, ("\n".join(lines) + "\n").encode())
    open_page(page, server, server.log_page(job))
    for number, line in enumerate(lines[:4], start=1):
        expect(text_of(page, number)).to_have_text(line)
    expect(text_of(page, 5)).to_have_text("<img src=y onerror=alert(4)>")
    page.locator(".vp").hover()
    time.sleep(0.3)
    assert page.locator(".vp img, .vp script, .vp .tx b").count() == 0
    assert dialogs == []


def test_timestamps_and_wrap_toggles(page: Page, server: ViewerServer) -> None:
    job = server.job("toggles")
    server.append(job, b"short\n" + b"wide " * 600 + b"\nlast\n")
    open_page(page, server, server.log_page(job))
    expect(text_of(page, 3)).to_have_text("last")
    stamp = row(page, 1).locator(".ts")
    expect(stamp).to_be_hidden()
    page.get_by_role("button", name="Time").click()
    expect(stamp).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$"))
    single = row(page, 1).evaluate("e => e.offsetHeight")
    tall = f"() => document.querySelector(\".vp .row a.ln[href='#L2']\").parentElement.offsetHeight > 5 * {single}"
    page.get_by_role("button", name="Wrap").click()
    page.wait_for_function(tall)
    expect(text_of(page, 3)).to_be_in_viewport()  # the rows below moved down, not under it
    shot(page, "logview-wrapped")
    page.get_by_role("button", name="Wrap").click()
    page.wait_for_function(f"() => !({tall[6:]})")
    page.get_by_role("button", name="Time").click()  # preferences are kept: leave them off
    expect(stamp).to_be_hidden()


def test_download_is_the_whole_log_as_stored(page: Page, server: ViewerServer) -> None:
    job = server.job("download")
    raw = b"".join(b"row %d \r\x1b[31mcolour\x1b[0m\n" % i for i in range(20_000)) + b"\xff\xfe end"
    server.append(job, raw)
    open_page(page, server, server.log_page(job))
    with page.expect_download() as download:
        page.get_by_role("button", name="Download").click()
    assert download.value.path().read_bytes() == raw


def test_hard_logs_leave_the_page_responsive(page: Page, server: ViewerServer) -> None:
    job = server.job("hard")
    giant = b"G" * (1024 * 1024)
    bars = b"".join(b"\r%6d/100000" % i for i in range(0, 100_001, 7))  # one line of redraws, ~1.3 MB
    server.append(job, b"before\n" + giant + b"\n" + bars + b"\nbad \xff\xfe bytes \xe6\x90\n" + b"after\n")
    started = time.monotonic()
    open_page(page, server, server.log_page(job))
    expect(text_of(page, 5)).to_have_text("after")
    assert time.monotonic() - started < 10  # generous: only a freeze fails this
    expect(row(page, 2).locator("button.more")).to_contain_text("+1,044,576 more characters")
    expect(text_of(page, 3)).to_have_text(re.compile(r"^\s*99995/100000$"))
    expect(text_of(page, 4)).to_have_text("bad \ufffd\ufffd bytes \ufffd")
    shot(page, "logview-hard")
    row(page, 2).locator("button.more").click()
    page.wait_for_function("() => [...document.querySelectorAll('.vp .row .tx')].some(e => e.textContent.length === 1048576)")
    started = time.monotonic()
    page.evaluate("1")
    assert time.monotonic() - started < 2  # generous: only a page frozen by the giant line fails this
