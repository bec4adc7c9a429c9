"""Browser tests of the web viewer: Debian's Chromium, driven by Playwright, against a real
`jobtail serve` (one per test process, `--executor none`: jobs are records, logs come in by
append). A failing test leaves a screenshot in test-results/viewer/."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.viewer import (
    CHROMIUM,
    CHROMIUM_ARGS,
    RESULTS,
    ViewerServer,
    missing_prerequisite,
    start_viewer_server,
    stop_viewer_server,
)


@pytest.fixture(scope="session", autouse=True)
def _prerequisites() -> None:
    reason = missing_prerequisite()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's Chromium (`playwright install` cannot download a browser here)."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def base_url() -> None:
    """None: pages are opened by full URL (and pytest-base-url's own fixture warns on this pytest)."""
    return None


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_context_args, "viewport": {"width": 1280, "height": 800}, "accept_downloads": True}


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewerServer]:
    running = start_viewer_server(tmp_path_factory.mktemp("viewer") / "data")
    yield running
    stop_viewer_server(running)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    page = getattr(item, "funcargs", {}).get("page")
    if report.when == "call" and report.failed and page is not None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid)
        try:
            page.screenshot(path=str(Path(RESULTS) / f"FAILED-{name}.png"))
        except Exception as exc:  # the page may be gone: say so, keep the test's own failure
            report.sections.append(("screenshot", f"none taken: {exc}"))
