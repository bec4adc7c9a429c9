"""Benchmark the ModelArts log preview: jobtail against nginx serving the very same bytes.

    .venv/bin/python bench/preview.py [--quick] [--sizes 4k,1m,100m,2g] [--keep]

For each log size it builds a task log through the real store API, starts `jobtail serve` and
an nginx that serves jobtail's exact preview responses as static files, then measures, for both
servers alternately: throughput (wrk -t2 -c16, median of runs), single-client latency (wrk -t1 -c1
--latency, p50/p90), and for jobtail alone the "cold" preview: the GET right after a 100-byte
append, when the cached encoded preview is stale and the tail must be read, decoded and encoded
again. It prints one table and writes JSON to bench/results/. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside this file
from _harness import (  # noqa: E402
    Jobtail, Nginx, ensure_tools, exit_on_sigterm, free_port, median, peak_rss, percentile, rchar,
    run_wrk, say, tool_version,
)
from _loggen import CHUNK, MiB, LogMaker, text_stats  # noqa: E402

import jobtail  # noqa: E402
from jobtail.core.types import TaskRef  # noqa: E402
from jobtail.settings import Settings  # noqa: E402
from jobtail.wiring import open_store  # noqa: E402

SIZES = {"4k": 4 * 1024, "1m": MiB, "100m": 100 * MiB, "2g": 2048 * MiB}
PROJECT, TASK = "bench", "worker-0"
SERVERS = ("jobtail", "nginx")
COLD_WARMUP = 3  # cold iterations run but not counted (first-touch effects)


@dataclass
class Plan:
    """What one run measures; `--quick` shrinks it."""

    sizes: list[str]
    duration: float  # seconds per throughput run
    runs: int  # throughput runs per server and size (the median is reported)
    latency_seconds: float  # seconds of single-client wrk per server and size
    cold_requests: int  # counted append+preview iterations per size
    workers: int = 2


@dataclass
class SizeResult:
    """Everything measured for one log size. Latencies in ms, rates per second."""

    label: str
    size: int
    job_id: str = ""
    build_seconds: float = 0.0
    text: dict[str, float] = field(default_factory=dict)  # stats of the log's last chunk
    body_bytes: int = 0  # bytes of the preview response body
    rps: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in SERVERS})
    errors: dict[str, int] = field(default_factory=lambda: {s: 0 for s in SERVERS})
    latency: dict[str, dict[str, float]] = field(default_factory=dict)  # server -> p50/p90/requests
    cold_ms: list[float] = field(default_factory=list)
    cold_read_bytes: float = 0.0  # rchar of the server processes per cold GET
    warm_python_ms: list[float] = field(default_factory=list)  # same client as cold, cached preview

    def rps_median(self, server: str) -> float:
        return median(self.rps[server])

    def task_path(self) -> str:
        return f"/v2/{PROJECT}/training-jobs/{self.job_id}/tasks/{TASK}"


def human(n: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


# -- building the logs --------------------------------------------------------------------------


def build_logs(data_dir: Path, results: list[SizeResult]) -> None:
    """Write each task log through the store API in-process, sealed as the server would seal it."""
    maker = LogMaker()
    if any(r.size > CHUNK for r in results):
        t0 = time.perf_counter()
        maker.body()
        say(f"generated the shared 64 MiB block of log text in {time.perf_counter() - t0:.1f} s")
    store = open_store(Settings(data_dir=data_dir))
    try:
        for r in results:
            job = store.create_job(PROJECT, f"size-{r.label}", node_count=1)
            ref, r.job_id = TaskRef(PROJECT, job.id, TASK), job.id
            t0, last = time.perf_counter(), b""
            for chunk in maker.chunks(r.size):
                appended = store.append(ref, chunk)
                if appended.seal_due:  # what the server's append handler schedules after responding
                    store.seal_log(appended.log_id)
                last = chunk
            store.seal_log(appended.log_id, min_head_bytes=1)  # the rest too: all bytes in segments
            r.build_seconds = time.perf_counter() - t0
            if appended.full_size != r.size:
                raise RuntimeError(f"{r.label}: log has {appended.full_size} bytes, wanted {r.size}")
            r.text = text_stats(last)
            say(f"built {human(r.size)} log (job {job.id}) in {r.build_seconds:.1f} s; last chunk: "
                f"{r.text['cjk_fraction']:.2%} CJK, {r.text['non_ascii_fraction']:.2%} non-ASCII chars, "
                f"longest line {r.text['longest_line']} B, {r.text['cr_count']} CRs")
    finally:
        store.close()


# -- measuring ----------------------------------------------------------------------------------


def fetch_previews(jt: Jobtail, results: list[SizeResult], root: Path) -> dict[str, bytes]:
    """Fetch each preview once from jobtail, check it, and write it where nginx serves it."""
    bodies = {}
    for r in results:
        resp = httpx.get(jt.base + r.task_path() + "/logs/preview", timeout=120)
        if resp.status_code != 200:
            raise RuntimeError(f"{r.label}: jobtail preview answered {resp.status_code}: {resp.text[:300]}")
        doc = resp.json()
        if doc["full_size"] != r.size or doc["current_size"] > min(r.size, 5 * MiB):
            raise RuntimeError(f"{r.label}: unexpected preview sizes {doc['current_size']}/{doc['full_size']}")
        bodies[r.label], r.body_bytes = resp.content, len(resp.content)
        (root / f"{r.label}.json").write_bytes(resp.content)
    return bodies


def verify_same(jt: Jobtail, ng: Nginx, results: list[SizeResult], bodies: dict[str, bytes]) -> None:
    """Both servers must send byte-identical bodies (jobtail twice: each request may hit either worker)."""
    for r in results:
        got = {"nginx": httpx.get(f"{ng.base}/{r.label}.json", timeout=120).content}
        for i in range(2):
            with httpx.Client(timeout=120) as c:  # a new connection each time
                got[f"jobtail#{i}"] = c.get(jt.base + r.task_path() + "/logs/preview").content
        bad = [name for name, body in got.items() if body != bodies[r.label]]
        if bad:
            raise RuntimeError(f"{r.label}: bodies differ from jobtail's first answer: {bad}")
    say("verified: nginx and jobtail send byte-identical preview bodies for every size")


def measure_http(wrk: str, urls: dict[str, str], r: SizeResult, plan: Plan) -> None:
    """Throughput (alternating servers run by run) and single-client latency, with wrk."""
    for server in SERVERS:  # warm-up: every jobtail worker caches the encoded preview
        run_wrk(wrk, urls[server], 2, 16, 1)
    for run in range(plan.runs):
        for server in SERVERS:
            w = run_wrk(wrk, urls[server], 2, 16, plan.duration)
            r.rps[server].append(w.rps)
            r.errors[server] += w.errors
            say(f"  {r.label} run {run + 1}/{plan.runs} {server:7s}: {w.rps:9.1f} req/s "
                f"{w.rps * r.body_bytes / 1e6:7.0f} MB/s" + (f"  ERRORS {w.errors}" if w.errors else ""))
    for server in SERVERS:
        w = run_wrk(wrk, urls[server], 1, 1, plan.latency_seconds, latency=True)
        r.errors[server] += w.errors
        r.latency[server] = {"p50": w.percentiles.get("50", float("nan")),
                             "p90": w.percentiles.get("90", float("nan")), "requests": w.requests}
        say(f"  {r.label} one client {server:7s}: p50 {r.latency[server]['p50']:.2f} ms, "
            f"p90 {r.latency[server]['p90']:.2f} ms over {w.requests} requests")


def measure_cold(jt: Jobtail, r: SizeResult, plan: Plan) -> None:
    """Append 100 bytes over HTTP, then time the GET preview (only the GET), `cold_requests` times.

    Also sums the server processes' `rchar` over each GET alone, so the figure shows what one
    preview reads (about the 5 MiB window, not the log), and times a few warm GETs afterwards with
    the same client, so client overhead can be told apart from the server's work.
    """
    conn = http.client.HTTPConnection("127.0.0.1", jt.port, timeout=120)
    pids, read = jt.pids(), 0
    preview = r.task_path() + "/logs/preview"
    try:
        for i in range(COLD_WARMUP + plan.cold_requests):
            line = f"2026-11-27 23:59:59,000 - INFO - [rank0] cold-preview probe {i:06d}".ljust(99) + "\n"
            conn.request("POST", r.task_path() + "/logs", body=line.encode(),
                         headers={"Content-Type": "application/octet-stream"})
            resp = conn.getresponse()
            answer = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{r.label}: append answered {resp.status}: {answer[:300]!r}")
            full = json.loads(answer)["full_size"]
            before, t0 = rchar(pids), time.perf_counter()
            conn.request("GET", preview)
            resp = conn.getresponse()
            body = resp.read()
            elapsed, after = (time.perf_counter() - t0) * 1e3, rchar(pids)
            if resp.status != 200 or not body.endswith(f'"full_size":{full}}}'.encode()):
                raise RuntimeError(f"{r.label}: cold preview answered {resp.status}, {body[-200:]!r}")
            if i >= COLD_WARMUP:
                r.cold_ms.append(elapsed)
                read += after - before
        for _ in range(20):  # the log no longer moves: these hit the cache (after one miss per worker)
            t0 = time.perf_counter()
            conn.request("GET", preview)
            conn.getresponse().read()
            r.warm_python_ms.append((time.perf_counter() - t0) * 1e3)
    finally:
        conn.close()
    r.cold_read_bytes = read / max(1, len(r.cold_ms))
    say(f"  {r.label} cold preview: p50 {median(r.cold_ms):.2f} ms, p90 {percentile(r.cold_ms, 0.9):.2f} ms, "
        f"{human(r.cold_read_bytes)} read per GET (same client, cached: p50 {median(r.warm_python_ms):.2f} ms)")


# -- reporting ----------------------------------------------------------------------------------


def report(results: list[SizeResult], rss: dict[str, int]) -> list[str]:
    """The table and summary lines, as printed."""
    head = ("size", "body", "jobtail req/s", "nginx req/s", "ratio", "jobtail MB/s",
            "p50 ms jobtail / nginx", "cold p50 ms", "read/request")
    rows = [head]
    for r in results:
        jt, ng = r.rps_median("jobtail"), r.rps_median("nginx")
        lat = r.latency
        rows.append((human(r.size), human(r.body_bytes), f"{jt:,.0f}", f"{ng:,.0f}", f"{jt / ng:.2f}",
                     f"{jt * r.body_bytes / 1e6:,.0f}",
                     f"{lat['jobtail']['p50']:.2f} / {lat['nginx']['p50']:.2f}",
                     f"{median(r.cold_ms):.2f}", human(r.cold_read_bytes)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [" | ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    by = {r.label: r for r in results}
    if "2g" in by and "1m" in by:
        big, one = median(by["2g"].cold_ms), median(by["1m"].cold_ms)
        extra = f", {big / median(by['100m'].cold_ms):.2f}x the 100 MiB one" if "100m" in by else ""
        lines.append(f"2 GiB cold preview p50 {big:.2f} ms = {big / one:.2f}x the 1 MiB one{extra}")
    lines.append("jobtail peak RSS (VmHWM): " + ", ".join(f"{k} {human(v)}" for k, v in rss.items()))
    failed = {f"{r.label}/{s}": n for r in results for s, n in r.errors.items() if n}
    lines.append(f"wrk errors (socket or non-2xx): {failed or 'none'}")
    return lines


def parse_args(argv: list[str] | None = None) -> tuple[Plan, bool]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="sizes 4k,1m,100m; one 3 s run; fewer cold requests")
    p.add_argument("--sizes", help=f"comma-separated subset of {','.join(SIZES)} (default: all; --quick: no 2g)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, configs, server logs)")
    a = p.parse_args(argv)
    labels = a.sizes.split(",") if a.sizes else (["4k", "1m", "100m"] if a.quick else list(SIZES))
    if unknown := [s for s in labels if s not in SIZES]:
        p.error(f"unknown sizes {unknown}; choose from {list(SIZES)}")
    if a.quick:
        return Plan(labels, duration=3, runs=1, latency_seconds=1, cold_requests=10), a.keep
    return Plan(labels, duration=10, runs=3, latency_seconds=3, cold_requests=40), a.keep


def main(argv: list[str] | None = None) -> int:
    plan, keep = parse_args(argv)
    exit_on_sigterm()
    # Settings read JOBTAIL_* variables: one left in the environment (say a database URL) would
    # point the benchmark, and the server it starts, at other data.
    for name in [n for n in os.environ if n.startswith("JOBTAIL_")]:
        say(f"ignoring {name} from the environment")
        del os.environ[name]
    nginx_exe, wrk = ensure_tools()
    results = [SizeResult(label, SIZES[label]) for label in plan.sizes]
    tmp = Path(tempfile.mkdtemp(prefix="jobtail-bench-", dir="/tmp"))
    tmp.chmod(0o755)  # nginx workers run as `nobody` when we are root and must reach the files
    say(f"working in {tmp}" + (" (kept afterwards)" if keep else " (removed afterwards)"))
    rss: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        if not keep:
            stack.callback(shutil.rmtree, tmp, ignore_errors=True)  # registered first, so runs last
        build_logs(tmp / "data", results)
        jt = stack.enter_context(Jobtail(tmp / "data", free_port(), plan.workers, tmp / "jobtail.log"))
        root = tmp / "nginx" / "html"
        root.mkdir(parents=True)
        bodies = fetch_previews(jt, results, root)
        ng = stack.enter_context(Nginx(nginx_exe, tmp / "nginx", root, free_port(), f"/{results[0].label}.json"))
        verify_same(jt, ng, results, bodies)
        del bodies
        for r in results:
            say(f"measuring {human(r.size)} (preview body {r.body_bytes:,} B)")
            measure_http(wrk, {"jobtail": jt.base + r.task_path() + "/logs/preview",
                               "nginx": f"{ng.base}/{r.label}.json"}, r, plan)
            measure_cold(jt, r, plan)
        rss = {name: peak_rss(pid) for name, pid in jt.roles().items()}
    lines = report(results, rss)
    print("\n" + "\n".join(lines), flush=True)
    out = Path(__file__).resolve().parent / "results" / f"preview-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "plan": asdict(plan),
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
                    "jobtail": jobtail.__version__, "nginx": tool_version([nginx_exe, "-v"]),
                    "wrk": tool_version([wrk, "-v"])},
        "units": "latency ms; MB = 1e6 bytes; read bytes = rchar per cold GET over all server processes",
        "sizes": [{**asdict(r), "jobtail_rps_median": r.rps_median("jobtail"),
                   "nginx_rps_median": r.rps_median("nginx")} for r in results],
        "peak_rss_bytes": rss, "table": lines,
    }, indent=2))
    say(f"results written to {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # servers and the temp dir are already cleaned up by then
        say("interrupted; every process this run started has been stopped")
        sys.exit(130)
