"""Live follow in the log viewer: new lines appear, scrolling up pauses and says so, one click
resumes, a server restart is resumed exactly, and a log written at 1,000 lines/s keeps the page
responsive."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect
from support.viewer import ViewerServer, open_page, shot, start_viewer_server, stop_viewer_server


def text_of(page: Page, line: int) -> Locator:
    return page.locator(".vp .row", has=page.locator(f"a.ln[href='#L{line}']")).locator(".tx")


def lines(first: int, last: int, prefix: str = "line") -> bytes:
    return b"".join(b"%s %d\n" % (prefix.encode(), i) for i in range(first, last + 1))


def test_new_lines_appear_and_scrolling_up_pauses(page: Page, server: ViewerServer) -> None:
    job = server.job("follow")
    server.append(job, lines(1, 200))
    open_page(page, server, server.log_page(job))
    expect(text_of(page, 200)).to_be_visible()
    server.append(job, lines(201, 205, "new"))
    expect(text_of(page, 205)).to_have_text("new 205")
    expect(text_of(page, 205)).to_be_in_viewport()
    expect(page.locator(".status .mode")).to_have_text("Following")

    page.locator(".vp").hover()
    page.mouse.wheel(0, -1000)
    status = page.locator(".status .mode")
    expect(status).to_have_text("Following paused — no new lines yet · resume")
    server.append(job, lines(206, 235, "later"))
    expect(status).to_have_text("Following paused — 30 new lines · resume")
    expect(page.locator(".status .range")).to_contain_text("of 235")
    expect(text_of(page, 235)).to_have_count(0)  # the window stayed where the user put it
    shot(page, "follow-paused")
    status.click()
    expect(text_of(page, 235)).to_be_in_viewport()
    expect(status).to_have_text("Following")
    server.append(job, b"progress  50%")  # an unfinished line shows, and is redrawn in place
    expect(text_of(page, 236)).to_have_text("progress  50%")
    server.append(job, b"\rprogress 100%\n")
    expect(text_of(page, 236)).to_have_text("progress 100%")


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[ViewerServer]:
    running = start_viewer_server(tmp_path / "data")
    yield running
    stop_viewer_server(running)


def test_a_restarted_server_is_followed_on_exactly(page: Page, restartable: ViewerServer) -> None:
    server = restartable
    job = server.job("restart")
    server.append(job, lines(1, 50))
    open_page(page, server, server.log_page(job))
    expect(text_of(page, 50)).to_be_visible()
    server.serve.stop()  # SIGTERM: the stream ends with "server shutting down"
    server.serve.start()
    server.append(job, lines(51, 100))
    expect(text_of(page, 100)).to_have_text("line 100")
    expect(page.locator(".status .range")).to_have_text(re.compile(r"–100 of 100$"))  # nothing twice, nothing lost
    for line in range(80, 101):
        expect(text_of(page, line)).to_have_text(f"line {line}")
    expect(page.locator(".status .mode")).to_have_text("Following")


def test_a_log_written_at_1000_lines_a_second_keeps_the_page_responsive(page: Page, server: ViewerServer) -> None:
    job = server.job("fast")
    server.append(job, lines(1, 1000, "warm"))
    open_page(page, server, server.log_page(job))
    expect(text_of(page, 1000)).to_be_visible()
    stop = threading.Event()
    written = [1000]

    def write() -> None:  # 100 lines every 100 ms, as a busy training script through the executor
        while not stop.is_set() and written[0] < 6000:
            started = time.monotonic()
            server.append(job, lines(written[0] + 1, written[0] + 100, "fast"))
            written[0] += 100
            stop.wait(max(0.0, 0.1 - (time.monotonic() - started)))

    writer = threading.Thread(target=write)
    writer.start()
    try:
        slowest = 0.0
        while writer.is_alive():
            started = time.monotonic()
            page.evaluate("document.querySelectorAll('.vp .row').length")
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.1)
        assert slowest < 2.0  # generous: only a page frozen by the stream fails this
    finally:
        stop.set()
        writer.join()
    last = written[0]
    expect(text_of(page, last)).to_have_text(f"fast {last}")
    expect(page.locator(".status .range")).to_have_text(re.compile(rf"of {last:,}$"))
    assert page.evaluate("document.querySelectorAll('.vp .row').length") < 100
