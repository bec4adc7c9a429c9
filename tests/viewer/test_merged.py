"""The merged view: every task's lines by arrival, each prefixed and coloured by its rank, a rank
filter, live lines, identical lines of several ranks folded into one row, and a silent rank marked."""

from __future__ import annotations

import re
import time
from pathlib import Path

from playwright.sync_api import Page, expect
from support.viewer import ViewerServer, open_page, shot

from jobtail.core.types import TaskRef
from jobtail.settings import Settings
from jobtail.wiring import open_store


def test_ranks_prefixed_coloured_filtered_and_followed(page: Page, server: ViewerServer) -> None:
    job = server.job("merged", tasks=3)
    for step in range(3):
        for rank in range(3):
            server.append(job, f"rank {rank} step {step}\n".encode(), task=f"worker-{rank}")
    open_page(page, server, server.log_page(job, None))
    rows = page.locator(".vp .row")
    expect(page.locator(".status .range")).to_have_text("Rows 1–9 of 9")
    expect(rows.locator(".rank")).to_have_count(9)
    first = rows.filter(has_text="rank 1 step 0").locator(".rank")
    expect(first).to_have_text("worker-1")
    expect(first).to_have_class(re.compile(r"\br1\b"))
    assert first.evaluate("e => getComputedStyle(e).color") != rows.filter(has_text="rank 2 step 0").locator(
        ".rank").evaluate("e => getComputedStyle(e).color")
    link = rows.filter(has_text="rank 2 step 2").locator("a.ln")
    expect(link).to_have_attribute("href", f"/p/{server.project}/jobs/{job}/logs/worker-2#L3")
    server.append(job, b"rank 1 late\n", task="worker-1")  # live, over the long poll
    expect(rows.filter(has_text="rank 1 late")).to_be_visible()
    expect(page.locator(".status .range")).to_have_text("Rows 1–10 of 10")
    shot(page, "merged")

    page.locator(".ranks .chip", has_text="worker-1").click()  # hide a rank
    expect(page).to_have_url(re.compile(r"/logs\?tasks=worker-0,worker-2$"))
    expect(page.locator(".status .range")).to_have_text("Rows 1–6 of 6")
    expect(rows.filter(has_text="rank 1")).to_have_count(0)
    expect(page.locator(".ranks .chip", has_text="worker-1")).to_have_attribute("aria-pressed", "false")
    page.locator(".ranks .chip", has_text="worker-1").click()
    expect(page.locator(".status .range")).to_have_text("Rows 1–10 of 10")


def test_identical_lines_of_several_ranks_fold_into_one_row(page: Page, server: ViewerServer) -> None:
    job = server.job("folds", tasks=4)
    for rank in range(4):
        server.append(job, f"rank {rank} loss {rank / 10}\nEpoch 1 finished, saving checkpoint\n".encode(),
                      task=f"worker-{rank}")
    open_page(page, server, server.log_page(job, None))
    folded = page.locator(".vp .row", has_text="Epoch 1 finished")
    expect(folded).to_have_count(1)
    toggle = folded.locator("button.fold")
    expect(toggle).to_have_text("× 4 ranks")
    expect(page.locator(".vp .row .tx", has_text="rank 3 loss")).to_be_visible()
    toggle.click()
    expect(folded).to_have_count(4)
    expect(folded.locator(".rank")).to_have_text(["worker-0", "worker-1", "worker-2", "worker-3"])
    shot(page, "merged-folds-open")
    toggle.click()
    expect(folded).to_have_count(1)
    page.get_by_role("button", name="Fold").click()  # folding off: every copy shows
    expect(folded).to_have_count(4)
    page.get_by_role("button", name="Fold").click()
    expect(folded).to_have_count(1)


def test_a_rank_silent_while_the_others_print_is_marked(page: Page, server: ViewerServer) -> None:
    job = server.job("silent", tasks=3)
    data_dir = Path(server.serve.data_dir)
    store = open_store(Settings(data_dir=data_dir))
    ten_minutes_ago = time.time() - 600  # rank 2 last spoke then
    store.append(TaskRef(server.project, job, "worker-2"), b"rank 2: waiting for NCCL\n", arrived_at=ten_minutes_ago)
    store.close()
    for rank in (0, 1):
        server.append(job, f"rank {rank} step 1\n".encode(), task=f"worker-{rank}")
    open_page(page, server, server.log_page(job, None))
    chip = page.locator(".ranks .chip", has_text="worker-2")
    expect(chip).to_have_class(re.compile(r"\bsilent\b"))
    expect(chip).to_contain_text("silent 10m")
    expect(page.locator(".ranks .chip.silent")).to_have_count(1)
