"""bench/viewer.py: the web viewer in Chromium at any log size (a benchmark, not a test).

    .venv/bin/python bench/viewer.py            # 1 MiB and 2 GiB logs, 60 s of following (~6 min)
    .venv/bin/python bench/viewer.py --quick    # 1 MiB and 100 MiB, 15 s of following (~2 min)

In one run, each figure beside a baseline measured the same way in the same browser:

1. **Newest lines visible**: from navigation to the log page until the newest line is drawn,
   for a 1 MiB and a 2 GiB log (fresh browser context each time: nothing cached); baseline:
   navigating to the line-page API answer those lines come from (Chromium showing its JSON).
2. **Jump to a line** (10,000,000 and others) in the 2 GiB log, until the line is drawn;
   baseline: the page's own fetch of that line page (the API round trip alone).
3. **Scrolling through 1,000,000 lines** from line 10,000,000 (1,000 wheel steps of 1,000 lines,
   each waiting for its lines): DOM rows and elements, and the JS heap after a forced GC, against
   the same page just opened.
4. **Following a job printing 1,000 lines/s** for 60 s (100 lines every 100 ms over HTTP), one
   task's view and the merged view of 4 tasks at 250 lines/s each: the longest main-thread task
   (PerformanceObserver "longtask", which reports tasks over 50 ms) against the same page idle,
   and, from a Chromium trace, each main-thread task's CPU time (wall time on a machine shared
   with other benchmarks also counts the time the page waited for a core).

Logs are built in-process through the store API (realistic text from `_loggen.py`, sealed into
segments as the server would); then `jobtail serve --executor none --rate-limit-per-second 0`
serves them (the limiter is off: a browser scrolling a million lines a second is not what it is
for). Chromium is Debian's (`apt-get install chromium`), driven by Playwright. Results are printed
as a table and saved to bench/results/viewer-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Jobtail, free_port, say
from _loggen import LogMaker, LogText
from jobtail.auth import manage
from jobtail.core.types import JobSpec, TaskRef
from jobtail.settings import Settings
from jobtail.wiring import open_identity, open_jobs

MiB = 1024 * 1024
PROJECT = "bench"
USER = "bench"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
TRACE_CATEGORIES = ["toplevel", "devtools.timeline"]
LONGTASKS = """window.__longtasks = [];
new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__longtasks.push(e.duration); })
  .observe({ type: 'longtask', buffered: true });"""
NEWEST = """([line]) => {
  const a = document.querySelector(`.vp a.ln[href='#L${line}']`);
  return a && !document.querySelector('.vp .row.loading') && performance.now();
}"""
JUMP = """async ([line]) => {
  const input = document.querySelector('input.jump');
  const started = performance.now();
  input.value = String(line);
  input.form.requestSubmit();
  for (;;) {
    if (document.querySelector(`.vp a.ln[href='#L${line}']`) && !document.querySelector('.vp .row.loading')) {
      return performance.now() - started;
    }
    await new Promise((resolve) => requestAnimationFrame(resolve));
  }
}"""
FETCH = """async ([path, token]) => {
  const started = performance.now();
  const answer = await (await fetch(path, { headers: { 'X-Auth-Token': token } })).json();
  return [performance.now() - started, answer.lines];
}"""
SCROLL = """async ([steps, pixels]) => {
  const box = document.querySelector('.vp');
  const started = performance.now();
  for (let i = 0; i < steps; i += 1) {
    box.dispatchEvent(new WheelEvent('wheel', { deltaY: pixels, bubbles: true, cancelable: true }));
    do { await new Promise((resolve) => requestAnimationFrame(resolve)); }
    while (document.querySelector('.vp .row.loading'));
  }
  return performance.now() - started;
}"""


def build(data_dir: Path, sizes: dict[str, int]) -> dict[str, str]:
    """Jobs with one task log per size, plus an empty one-task and four-task job to follow."""
    maker, jobs = LogMaker(), {}
    with open_jobs(Settings(data_dir=data_dir)) as (service, store):
        for label, size in sizes.items():
            job = service.create(PROJECT, JobSpec("log-" + label.replace(" ", "").lower()), "none")
            ref = TaskRef(PROJECT, job.id, "worker-0")
            started = time.perf_counter()
            for chunk in maker.chunks(size):
                store.append(ref, chunk)  # full heads are sealed in the background, as in the server
            store.seal(ref)
            jobs[label] = job.id
            say(f"built the {label} log in {time.perf_counter() - started:.1f} s")
        jobs["follow"] = service.create(PROJECT, JobSpec("follow"), "none").id
        jobs["follow-4"] = service.create(PROJECT, JobSpec("follow-4", node_count=4), "none").id
    return jobs


def provision(data_dir: Path) -> str:
    password = secrets.token_urlsafe(18)
    with open_identity(Settings(data_dir=data_dir)) as identity:
        manage.create_project(identity, PROJECT, PROJECT)
        manage.create_user(identity, USER, password)
        manage.grant(identity, USER, PROJECT, "admin")
    return password


def sign_in(base: str, password: str) -> dict[str, Any]:
    r = httpx.post(base + "/v3/auth/tokens", json={"auth": {"identity": {"methods": ["password"], "password": {
        "user": {"name": USER, "password": password}}}}}, timeout=30)
    r.raise_for_status()
    token = r.headers["x-subject-token"]
    projects = httpx.get(base + "/v3/auth/projects", headers={"X-Auth-Token": token}, timeout=30).json()["projects"]
    return {"token": token, "user": USER, "projects": projects}


def context(browser: Browser, session: dict[str, Any], *, observe: bool = False) -> BrowserContext:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.add_init_script(f"sessionStorage.setItem('jobtail.session', {json.dumps(json.dumps(session))})")
    if observe:
        ctx.add_init_script(LONGTASKS)
    return ctx


def last_line(base: str, token: str, job: str) -> int:
    r = httpx.get(f"{base}/v2/{PROJECT}/training-jobs/{job}/logs/worker-0", params={"lines": 1},
                  headers={"X-Auth-Token": token}, timeout=60)
    return int(r.json()["start_line"])


def newest_visible(browser: Browser, session: dict[str, Any], base: str, job: str, line: int) -> float:
    ctx = context(browser, session)
    page = ctx.new_page()
    page.goto(f"{base}/p/{PROJECT}/jobs/{job}/logs/worker-0", wait_until="commit")
    elapsed = float(page.wait_for_function(NEWEST, arg=[line], polling="raf", timeout=60_000).json_value())
    ctx.close()
    return elapsed


def api_page_visible(browser: Browser, session: dict[str, Any], base: str, job: str) -> float:
    ctx = browser.new_context(extra_http_headers={"X-Auth-Token": session["token"]})
    page = ctx.new_page()
    page.goto(f"{base}/v2/{PROJECT}/training-jobs/{job}/logs/worker-0?lines=200&timestamps=true&collapse_cr=true")
    elapsed = float(page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd"))
    ctx.close()
    return elapsed


def heap(page: Page) -> dict[str, int]:
    cdp = page.context.new_cdp_session(page)
    cdp.send("HeapProfiler.collectGarbage")
    used = int(cdp.send("Runtime.getHeapUsage")["usedSize"])
    cdp.detach()
    counts = page.evaluate("[document.querySelectorAll('.vp .row').length, document.getElementsByTagName('*').length]")
    return {"heap_bytes": used, "rows": counts[0], "elements": counts[1]}


def follow(browser: Browser, session: dict[str, Any], base: str, job: str, tasks: int, seconds: float) -> dict[str, Any]:
    """Longest main-thread tasks of the page following `job` while it prints 1,000 lines/s in
    all (idle for 10 s first: the baseline)."""
    ctx = context(browser, session, observe=True)
    page = ctx.new_page()
    path = f"/p/{PROJECT}/jobs/{job}/logs" + ("/worker-0" if tasks == 1 else "")
    for task in range(tasks):  # one line each, so the page opens on a log
        httpx.post(f"{base}/v2/{PROJECT}/training-jobs/{job}/tasks/worker-{task}/logs", content=b"start\n",
                   headers={"X-Auth-Token": session["token"]}, timeout=30).raise_for_status()
    page.goto(base + path)
    page.wait_for_selector(".vp .row a.ln")
    time.sleep(10)
    idle = page.evaluate("window.__longtasks.splice(0)")
    texts = [LogText(seed) for seed in range(tasks)]
    stop, sent = threading.Event(), [0]

    def write() -> None:
        with httpx.Client(base_url=base, headers={"X-Auth-Token": session["token"]}, timeout=30) as http:
            end = time.monotonic() + seconds
            while time.monotonic() < end and not stop.is_set():
                tick = time.monotonic()
                for task in range(tasks):
                    body = "".join(texts[task]._line() for _ in range(100 // tasks)).encode()
                    http.post(f"/v2/{PROJECT}/training-jobs/{job}/tasks/worker-{task}/logs", content=body).raise_for_status()
                    sent[0] += 100 // tasks
                stop.wait(max(0.0, 0.1 - (time.monotonic() - tick)))

    writer = threading.Thread(target=write)
    trace = Path(tempfile.mkstemp(prefix="jobtail-viewer-trace-", suffix=".json")[1])
    browser.start_tracing(page=page, path=str(trace), categories=TRACE_CATEGORIES)
    started = time.monotonic()
    writer.start()
    writer.join()
    took = time.monotonic() - started
    time.sleep(2)
    browser.stop_tracing()
    cpu = main_thread_tasks(trace)
    trace.unlink()
    busy = page.evaluate("window.__longtasks.splice(0)")
    shown = page.locator(".status .range").inner_text()
    rows = page.evaluate("document.querySelectorAll('.vp .row').length")
    ctx.close()
    return {"tasks": tasks, "lines": sent[0], "seconds": round(took, 1), "lines_per_second": round(sent[0] / took),
            "longest_ms": max(busy, default=0.0), "long_tasks": len(busy), "idle_longest_ms": max(idle, default=0.0),
            "idle_long_tasks": len(idle), "status": shown, "rows": rows, **cpu}


def main_thread_tasks(trace: Path) -> dict[str, float]:
    """From a Chromium trace: the page's main-thread tasks, by wall time and by CPU time. The
    CPU time (`tdur`) is the page's own work; wall time also counts time the thread waited for a
    core, which on a machine shared with other benchmarks can be most of it."""
    events = json.loads(trace.read_text())
    events = events["traceEvents"] if isinstance(events, dict) else events
    threads = {(e["pid"], e["tid"]) for e in events if e.get("ph") == "M" and e.get("name") == "thread_name"
               and e["args"].get("name") == "CrRendererMain"}
    tasks = [e for e in events if e.get("ph") == "X" and e.get("name") == "ThreadControllerImpl::RunTask"
             and (e["pid"], e["tid"]) in threads]
    walls = sorted(e.get("dur", 0) / 1000 for e in tasks)
    cpus = sorted(e.get("tdur", 0) / 1000 for e in tasks)
    return {"tasks_traced": len(tasks), "longest_wall_ms": walls[-1] if walls else 0.0,
            "longest_cpu_ms": cpus[-1] if cpus else 0.0, "cpu_over_50ms": sum(c > 50 for c in cpus),
            "p99_cpu_ms": cpus[int(len(cpus) * 0.99)] if cpus else 0.0}


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 MiB instead of 2 GiB, 15 s of following")
    parser.add_argument("--rounds", type=int, default=5, help="navigations per log size")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    big_label, big_size = ("100 MiB", 100 * MiB) if args.quick else ("2 GiB", 2048 * MiB)
    follow_seconds = 15.0 if args.quick else 60.0
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    root = Path(tempfile.mkdtemp(prefix="jobtail-viewer-bench-"))
    data_dir = root / "data"
    results: dict[str, Any] = {"load_before": os.getloadavg()}
    try:
        data_dir.mkdir(parents=True)
        password = provision(data_dir)
        jobs = build(data_dir, {"1 MiB": MiB, big_label: big_size})
        port = free_port()
        extra = ["--executor", "none", "--rate-limit-per-second", "0"]
        with Jobtail(data_dir, port, 1, root / "jobtail.log", extra) as server, sync_playwright() as pw:
            base = server.base
            session = sign_in(base, password)
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            lines = {label: last_line(base, session["token"], jobs[label]) for label in ("1 MiB", big_label)}
            say(f"lines: {lines}")

            newest: dict[str, dict[str, float]] = {}
            for label in ("1 MiB", big_label):
                newest_visible(browser, session, base, jobs[label], lines[label])  # warm the server's caches
            for label in ("1 MiB", big_label):
                viewer = [newest_visible(browser, session, base, jobs[label], lines[label]) for _ in range(args.rounds)]
                api = [api_page_visible(browser, session, base, jobs[label]) for _ in range(args.rounds)]
                newest[label] = {"viewer_ms": median(viewer), "api_page_ms": median(api), "viewer_all": viewer}
                say(f"newest lines of the {label} log visible: {median(viewer):.0f} ms (API page alone {median(api):.0f} ms)")
            results["newest"] = newest

            ctx = context(browser, session)
            page = ctx.new_page()
            page.goto(f"{base}/p/{PROJECT}/jobs/{jobs[big_label]}/logs/worker-0")
            page.wait_for_function(NEWEST, arg=[lines[big_label]], polling="raf", timeout=60_000)
            opened = heap(page)
            total = lines[big_label]
            targets = [t for t in (10_000_000, 2_500_000, 12_345_678, 7_654_321, 500_000, 10_000_000) if t <= total]
            if not targets:
                targets = [total // 2, total // 4, total // 3]
            jumps, fetches = [], []
            for target in targets:
                jumps.append(float(page.evaluate(JUMP, [target])))
                api = (f"/v2/{PROJECT}/training-jobs/{jobs[big_label]}/logs/worker-0"
                       f"?order=asc&lines=200&timestamps=true&collapse_cr=true&base_line={target - 100}")
                fetches.append(float(page.evaluate(FETCH, [api, session["token"]])[0]))
            results["jump"] = {"targets": targets, "viewer_ms": median(jumps), "api_fetch_ms": median(fetches),
                               "viewer_all": jumps}
            say(f"jump to a line: {median(jumps):.0f} ms (its line page fetched alone: {median(fetches):.0f} ms)")

            start_line = targets[0]
            steps = min(1000, max(10, (total - start_line) // 1000 - 1))
            page.evaluate(JUMP, [start_line])
            scroll_ms = float(page.evaluate(SCROLL, [steps, 18 * 1000]))
            scrolled = heap(page)
            results["scroll"] = {"from_line": start_line, "lines": steps * 1000, "ms": scroll_ms, "opened": opened,
                                 "after": scrolled, "status": page.locator(".status .range").inner_text()}
            say(f"scrolled {steps * 1000:,} lines in {scroll_ms / 1000:.1f} s: {scrolled} (just opened: {opened})")
            ctx.close()

            results["follow"] = [follow(browser, session, base, jobs["follow"], 1, follow_seconds),
                                 follow(browser, session, base, jobs["follow-4"], 4, follow_seconds)]
            for f in results["follow"]:
                say(f"following {f['tasks']} task(s) at {f['lines_per_second']} lines/s for {f['seconds']} s: "
                    f"longest task {f['longest_ms']:.0f} ms ({f['long_tasks']} over 50 ms; idle: "
                    f"{f['idle_longest_ms']:.0f} ms, {f['idle_long_tasks']}); by CPU time: longest "
                    f"{f['longest_cpu_ms']:.1f} ms, p99 {f['p99_cpu_ms']:.2f} ms of {f['tasks_traced']} tasks; {f['status']}")
            browser.close()
        results["load_after"] = os.getloadavg()
        out = Path(__file__).resolve().parent / "results"
        out.mkdir(exist_ok=True)
        target = out / f"viewer-{time.strftime('%Y%m%d-%H%M%S')}.json"
        target.write_text(json.dumps(results, indent=2))
        say(f"results in {target}")
        print(json.dumps({k: v for k, v in results.items() if k != "follow"}, indent=1))
        return 0
    finally:
        if args.keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
