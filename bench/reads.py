"""Benchmark the read path while logs change: jobtail against nginx, interleaved run by run.

    .venv/bin/python bench/reads.py [--quick] [--runs 3] [--seconds 5] [--keep]

Four figures, each `wrk -t2 -c16` against jobtail (`serve --workers 2`, rate limit off, every
preview request carrying a viewer token) and, right after it in the same round, against nginx
serving the same bytes as a static file:

- `growing`: the preview of a 100 MiB log (a 5 MiB window) while one client appends 4 KB to it
  every 100 ms (signed, developer AK/SK), so nearly every append invalidates the cached preview.
  The log has grown that way for a while already: PREGROWN appends of 4 KB sit in its unsealed
  head (one row each), and the server runs with `--seal-idle-seconds 600` so that the pauses
  between runs do not seal them. nginx serves a preview body of that log from a file;
- `rss`: each jobtail worker's resident memory when it has started, after the first preview of
  the 100 MiB log it encodes (one request at a time: what one preview's buffers take), after the
  unchanged-log warm-up, and its peak during the growing runs (sampled every 20 ms); how far the
  peak rose above the start, and above the unchanged log's level, is also given in first-preview
  growths;
- `4k`: the cached preview of a 4 KiB log with the token, next to nginx's 4 KiB file;
- `healthz`: `GET /healthz`, next to nginx serving the same body as a file.

Prints medians, ratios and the runs, and writes JSON to bench/results/reads-<time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside this file
from _harness import Jobtail, Nginx, ensure_tools, exit_on_sigterm, free_port, median, run_wrk, say
from _loggen import MiB
from jobtail.core.types import TaskRef
from jobtail.settings import Settings
from jobtail.wiring import open_jobs
from preview import PROJECT, TASK, SizeResult, build_logs, log_in, presign, provision

FIGURES = ("growing", "4k", "healthz")
GROW_BYTES, GROW_EVERY = 4000, 0.1
PREGROWN = 1000  # 4 KB appends in the growing log's head before the measurement (~4 MB of an 8 MiB head)


@dataclass
class Figure:
    name: str
    rps: dict[str, list[float]] = field(default_factory=lambda: {"jobtail": [], "nginx": []})
    errors: int = 0

    def ratio(self) -> float:
        """The median of the runs' ratios: each jobtail run against the nginx run right after it."""
        return median([j / n for j, n in zip(self.rps["jobtail"], self.rps["nginx"], strict=True)])


def vm_rss(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Grower(threading.Thread):
    """Appends GROW_BYTES to the log every GROW_EVERY seconds until stopped; samples RSS meanwhile."""

    def __init__(self, jt: Jobtail, path: str, key: tuple[str, str], workers: list[int]) -> None:
        super().__init__(daemon=True)
        self.jt, self.path, self.key, self.workers = jt, path, key, workers
        self.stop_event = threading.Event()
        self.appends = 0
        self.peak = dict.fromkeys(workers, 0)

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.jt.port, timeout=60)
        next_at = time.monotonic()
        try:
            while not self.stop_event.is_set():
                body = grow_line(PREGROWN + self.appends)
                conn.request("POST", self.path, body=body,
                             headers=presign(self.jt, "POST", self.path, self.key, body, "application/octet-stream"))
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"append answered {resp.status}")
                self.appends += 1
                next_at += GROW_EVERY
                while (left := next_at - time.monotonic()) > 0 and not self.stop_event.is_set():
                    for pid in self.workers:
                        self.peak[pid] = max(self.peak[pid], vm_rss(pid))
                    self.stop_event.wait(min(left, 0.02))
        finally:
            conn.close()


def first_preview_rss(url: str, headers: dict[str, str], workers: list[int]) -> dict[int, tuple[int, int]]:
    """Each worker's RSS before and after the first preview it encodes (one request at a time, a
    new connection each, until every worker's RSS has moved): what one preview's buffers take."""
    before = {pid: vm_rss(pid) for pid in workers}
    after = dict(before)
    for _ in range(40):
        httpx.get(url, headers={**headers, "Connection": "close"}, timeout=60).raise_for_status()
        for pid in workers:
            if after[pid] == before[pid] and (now := vm_rss(pid)) - before[pid] > MiB:
                after[pid] = now
        if all(after[pid] != before[pid] for pid in workers):
            break
    return {pid: (before[pid], after[pid]) for pid in workers}


def over(rss: dict[str, dict[str, int]], level: str, worker: str) -> float:
    """How far `worker`'s peak while the log grew rose above its RSS at `level` (when it had
    started, or after the unchanged log's warm-up), in growths of its first preview."""
    first = rss["first_preview"][worker] - rss["started"][worker]
    return (rss["growing_peak"][worker] - rss[level][worker]) / max(1, first)


def grow_line(n: int) -> bytes:
    return (f"{time.time():.6f} growing line {n:08d} ".ljust(GROW_BYTES - 1, "x") + "\n").encode()


def pregrow(data_dir: Path, job_id: str) -> None:
    """PREGROWN appends of GROW_BYTES into the head of the log, in-process (the head stays unsealed)."""
    with open_jobs(Settings(data_dir=data_dir)) as (_jobs, store):
        ref = TaskRef(PROJECT, job_id, TASK)
        for n in range(PREGROWN):
            store.append(ref, grow_line(n))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--quick", action="store_true", help="one run of 3 s")
    p.add_argument("--keep", action="store_true")
    a = p.parse_args(argv)
    runs, seconds = (1, 3.0) if a.quick else (a.runs, a.seconds)
    exit_on_sigterm()
    for name in [n for n in os.environ if n.startswith("JOBTAIL_")]:
        del os.environ[name]
    nginx_exe, wrk = ensure_tools()
    tmp = Path(tempfile.mkdtemp(prefix="jobtail-bench-reads-", dir="/tmp"))
    tmp.chmod(0o755)
    logs = [SizeResult("4k", 4 * 1024), SizeResult("100m", 100 * MiB)]
    figures = {name: Figure(name) for name in FIGURES}
    rss: dict[str, dict[str, int]] = {}
    load = [os.getloadavg()[0]]
    with contextlib.ExitStack() as stack:
        if not a.keep:
            stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        build_logs(tmp / "data", logs)
        pregrow(tmp / "data", logs[1].job_id)
        access = provision(tmp / "data")
        jt = stack.enter_context(Jobtail(tmp / "data", free_port(), 2, tmp / "jobtail.log",
                                         extra=["--rate-limit-per-second", "0", "--seal-idle-seconds", "600"]))
        log_in(jt, access)
        small, big = (r.task_path() + "/logs/preview" for r in logs)
        headers = access.read_headers()
        workers = [pid for role, pid in jt.roles().items() if role.startswith("worker")]
        first = first_preview_rss(jt.base + big, headers, workers)  # before any other preview
        root = tmp / "nginx" / "html"
        root.mkdir(parents=True)
        for name, path, extra in (("4k", small, headers), ("growing", big, headers), ("healthz", "/healthz", {})):
            resp = httpx.get(jt.base + path, headers=extra, timeout=60)
            resp.raise_for_status()
            (root / f"{name}.json").write_bytes(resp.content)
        ng = stack.enter_context(Nginx(nginx_exe, tmp / "nginx", root, free_port(), "/healthz.json"))
        urls = {"4k": jt.base + small, "growing": jt.base + big, "healthz": jt.base + "/healthz"}
        for name in FIGURES:  # warm-up, and a check that nothing answers an error
            for url, h in ((urls[name], headers if name != "healthz" else {}), (f"{ng.base}/{name}.json", {})):
                if (w := run_wrk(wrk, url, 2, 16, 1, headers=h)).errors:
                    raise RuntimeError(f"{name}: {url} answered {w.errors} errors in the warm-up")
        rss["started"] = {str(pid): first[pid][0] for pid in workers}
        rss["first_preview"] = {str(pid): first[pid][1] for pid in workers}
        rss["unchanged"] = {str(pid): vm_rss(pid) for pid in workers}
        grow_peak = dict.fromkeys(workers, 0)
        appends = 0
        for run in range(runs):
            for name in FIGURES:
                fig = figures[name]
                grower = None
                if name == "growing":
                    grower = Grower(jt, logs[1].task_path() + "/logs", access.developer_key, workers)
                    grower.start()
                w = run_wrk(wrk, urls[name], 2, 16, seconds, headers=headers if name != "healthz" else {})
                if grower is not None:
                    grower.stop_event.set()
                    grower.join()
                    appends += grower.appends
                    for pid, peak in grower.peak.items():
                        grow_peak[pid] = max(grow_peak[pid], peak)
                n = run_wrk(wrk, f"{ng.base}/{name}.json", 2, 16, seconds)
                fig.rps["jobtail"].append(w.rps)
                fig.rps["nginx"].append(n.rps)
                fig.errors += w.errors + n.errors
                say(f"run {run + 1}/{runs} {name:8s} jobtail {w.rps:9.1f} req/s  nginx {n.rps:9.1f} req/s"
                    + (f"  ERRORS {w.errors + n.errors}" if w.errors or n.errors else ""))
        rss["growing_peak"] = {str(pid): v for pid, v in grow_peak.items()}
        load.append(os.getloadavg()[0])
    lines = [f"wrk -t2 -c{16} -d{seconds:g}s, medians of {runs} interleaved runs (jobtail, then nginx, per figure)",
             "| figure | jobtail req/s | nginx req/s | ratio (median of runs') | runs jobtail / nginx |", "|---|---|---|---|---|"]
    for fig in figures.values():
        lines.append(f"| {fig.name} | {median(fig.rps['jobtail']):,.0f} | {median(fig.rps['nginx']):,.0f} | "
                     f"{fig.ratio():.3f} | {' '.join(f'{x:.0f}' for x in fig.rps['jobtail'])} / "
                     f"{' '.join(f'{x:.0f}' for x in fig.rps['nginx'])} |")
    lines.append(f"growing: {appends} appends of {GROW_BYTES} B during the jobtail runs")
    lines.append("worker RSS MiB, started / after its first preview / unchanged-log warm-up / peak while growing "
                 "(the peak over the start, and over the unchanged log's level, in first previews' growths): "
                 + ", ".join(f"{rss['started'][k] / MiB:.0f} / {rss['first_preview'][k] / MiB:.0f} / "
                             f"{rss['unchanged'][k] / MiB:.0f} / {rss['growing_peak'][k] / MiB:.0f} "
                             f"({over(rss, 'started', k):.1f}x, {over(rss, 'unchanged', k):.1f}x)"
                             for k in rss["unchanged"]))
    lines.append(f"errors: {sum(f.errors for f in figures.values())}; load average (1 min) before/after: "
                 + " ".join(f"{x:.2f}" for x in load))
    print("\n" + "\n".join(lines), flush=True)
    out = Path(__file__).resolve().parent / "results" / f"reads-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"runs": runs, "seconds": seconds, "figures": {f.name: f.rps for f in figures.values()},
                               "rss": rss, "appends": appends, "load": load, "table": lines}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
