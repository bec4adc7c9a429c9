"""Benchmark the ModelArts log preview: jobtail against nginx serving the very same bytes.

    .venv/bin/python bench/preview.py [--quick] [--sizes 4k,1m,5m,100m,2g] [--keep]

For each log size it builds a task log through the real store API, provisions access with
`jobtail admin` (a viewer user with a password, a viewer and a developer AK/SK), starts
`jobtail serve` (rate limit off) and an nginx that serves jobtail's exact preview responses as
static files, then measures, for both servers alternately: throughput (wrk -t2 -c16, median of
runs), single-client latency (wrk -t1 -c1 --latency, p50/p90), and for jobtail alone the "cold"
preview: the GET right after a 100-byte append, when the cached encoded preview is stale and the
tail must be read, decoded and encoded again. jobtail requests carry a token (X-Auth-Token); for
the 1 MiB log, single-client latency with a token, with a pre-signed AK/SK request and of
/healthz is also measured in alternation. It prints one table and writes JSON to bench/results/.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside this file
import jobtail
from _harness import (
    Jobtail,
    Nginx,
    ensure_tools,
    exit_on_sigterm,
    free_port,
    jobtail_admin,
    median,
    peak_rss,
    percentile,
    rchar,
    run_wrk,
    say,
    tool_version,
)
from _loggen import CHUNK, LogMaker, MiB, text_stats
from jobtail.auth.signing import sign_request
from jobtail.core.types import JobSpec, TaskRef
from jobtail.settings import Settings
from jobtail.wiring import open_jobs

# 5m: the largest log whose preview is the whole log. 100m and 2g return the same 5 MiB window, so
# "the preview costs the same whatever the log's size" compares 2g with 5m (1m returns only 1 MiB).
SIZES = {"4k": 4 * 1024, "1m": MiB, "5m": 5 * MiB, "100m": 100 * MiB, "2g": 2048 * MiB}
PROJECT, TASK = "bench", "worker-0"
USER = "bench"  # a viewer in PROJECT; its token is what every jobtail request of the table carries
SERVERS = ("jobtail", "nginx")
COLD_WARMUP = 3  # cold iterations run but not counted (first-touch effects)
AUTH_SIZE = "1m"  # the log whose cached preview is also timed with AK/SK (and /healthz beside it)
AUTH_VARIANTS = ("token", "aksk", "healthz")


@dataclass
class Access:
    """What the benchmark authenticates with, provisioned with `jobtail admin` before the server starts.

    Reads (every timed jobtail request) carry the viewer user's token; the cold measurement's
    appends need the developer role and are signed with a developer AK/SK; `viewer_key` signs the
    AK/SK latency measurement.
    """

    password: str
    viewer_key: tuple[str, str]  # (access key, secret key), role viewer in PROJECT
    developer_key: tuple[str, str]  # role developer in PROJECT: may append
    token: str = ""  # from POST /v3/auth/tokens once the server runs

    def read_headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self.token}


@dataclass
class Plan:
    """What one run measures; `--quick` shrinks it."""

    sizes: list[str]
    duration: float  # seconds per throughput run
    runs: int  # throughput runs per server and size (the median is reported)
    latency_seconds: float  # seconds of single-client wrk per server and size
    cold_requests: int  # counted append+preview iterations per size
    auth_rounds: int  # alternating token / AK/SK / healthz latency rounds (AUTH_SIZE only)
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
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SERVERS, 0))
    latency: dict[str, dict[str, float]] = field(default_factory=dict)  # server -> p50/p90/requests
    cold_ms: list[float] = field(default_factory=list)
    cold_read_bytes: float = 0.0  # rchar of the server processes per cold GET
    warm_python_ms: list[float] = field(default_factory=list)  # same client as cold, cached preview
    # AUTH_SIZE only: variant ("token", "aksk", "healthz") -> per alternating round {"p50", "p90", "requests"}
    auth: dict[str, list[dict[str, float]]] = field(default_factory=dict)

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
    with open_jobs(Settings(data_dir=data_dir)) as (jobs, store):
        for r in results:
            job = jobs.create(PROJECT, JobSpec(f"size-{r.label}"), "none")
            ref, r.job_id = TaskRef(PROJECT, job.id, TASK), job.id
            t0, last = time.perf_counter(), b""
            for chunk in maker.chunks(r.size):
                appended = store.append(ref, chunk)  # full heads are sealed in the background, as in the server
                last = chunk
            store.seal(ref)  # the rest too: all bytes in segments
            r.build_seconds = time.perf_counter() - t0
            if appended.full_size != r.size:
                raise RuntimeError(f"{r.label}: log has {appended.full_size} bytes, wanted {r.size}")
            r.text = text_stats(last)
            say(f"built {human(r.size)} log (job {job.id}) in {r.build_seconds:.1f} s; last chunk: "
                f"{r.text['cjk_fraction']:.2%} CJK, {r.text['non_ascii_fraction']:.2%} non-ASCII chars, "
                f"longest line {r.text['longest_line']} B, {r.text['cr_count']} CRs")


# -- access -------------------------------------------------------------------------------------


def provision(data_dir: Path) -> Access:
    """Project, user, role and credentials through the CLI, on the data dir the server will use.

    The identity store then holds a project, so `jobtail serve` skips its first-start bootstrap.
    """
    password = secrets.token_urlsafe(18)
    jobtail_admin(data_dir, "project", "create", "--id", PROJECT, PROJECT)
    jobtail_admin(data_dir, "user", "create", USER, "--password-stdin", stdin=password + "\n")
    jobtail_admin(data_dir, "user", "grant", USER, "--project", PROJECT, "--role", "viewer")
    keys = {}
    for role in ("viewer", "developer"):
        doc = json.loads(jobtail_admin(data_dir, "credential", "create", "--project", PROJECT, "--role", role,
                                       "--description", f"bench/preview.py {role}", "--json"))
        keys[role] = (doc["access_key"], doc["secret_key"])
    say(f"provisioned project {PROJECT!r}: user {USER!r} (viewer), AK/SK {keys['viewer'][0]} (viewer), "
        f"{keys['developer'][0]} (developer)")
    return Access(password, keys["viewer"], keys["developer"])


def log_in(jt: Jobtail, access: Access) -> None:
    """A project-scoped token for the viewer user (Keystone password method)."""
    body = {"auth": {"identity": {"methods": ["password"],
                                  "password": {"user": {"name": USER, "password": access.password}}},
                     "scope": {"project": {"id": PROJECT}}}}
    resp = httpx.post(jt.base + "/v3/auth/tokens", json=body, timeout=30)
    if resp.status_code != 201 or not resp.headers.get("X-Subject-Token"):
        raise RuntimeError(f"token request answered {resp.status_code}: {resp.text[:300]}")
    access.token = resp.headers["X-Subject-Token"]
    say(f"token issued for {USER!r}, expires {resp.json()['token']['expires_at']}")


def presign(jt: Jobtail, method: str, path: str, key: tuple[str, str], body: bytes | None = None,
            content_type: str | None = None) -> dict[str, str]:
    """The headers of one AK/SK-signed request, Host as wrk and http.client send it (host:port).

    The signature holds for 15 minutes (the allowed X-Sdk-Date skew), and the server keeps no
    replay cache, so the same header set can be sent over and over meanwhile.
    """
    headers = {"Host": f"127.0.0.1:{jt.port}"}
    if content_type:
        headers["Content-Type"] = content_type
    return {**headers, **sign_request(method, path, headers, body, key[0], key[1])}


# -- measuring ----------------------------------------------------------------------------------


def fetch_previews(jt: Jobtail, results: list[SizeResult], root: Path, access: Access) -> dict[str, bytes]:
    """Fetch each preview once from jobtail, check it, and write it where nginx serves it."""
    bodies = {}
    for r in results:
        resp = httpx.get(jt.base + r.task_path() + "/logs/preview", headers=access.read_headers(), timeout=120)
        if resp.status_code != 200:
            raise RuntimeError(f"{r.label}: jobtail preview answered {resp.status_code}: {resp.text[:300]}")
        doc = resp.json()
        if doc["full_size"] != r.size or doc["current_size"] > min(r.size, 5 * MiB):
            raise RuntimeError(f"{r.label}: unexpected preview sizes {doc['current_size']}/{doc['full_size']}")
        bodies[r.label], r.body_bytes = resp.content, len(resp.content)
        (root / f"{r.label}.json").write_bytes(resp.content)
    return bodies


def verify_same(jt: Jobtail, ng: Nginx, results: list[SizeResult], bodies: dict[str, bytes],
                access: Access) -> None:
    """Both servers must send byte-identical bodies (jobtail twice: each request may hit either worker)."""
    for r in results:
        got = {"nginx": httpx.get(f"{ng.base}/{r.label}.json", timeout=120).content}
        for i in range(2):
            with httpx.Client(timeout=120, headers=access.read_headers()) as c:  # a new connection each time
                got[f"jobtail#{i}"] = c.get(jt.base + r.task_path() + "/logs/preview").content
        bad = [name for name, body in got.items() if body != bodies[r.label]]
        if bad:
            raise RuntimeError(f"{r.label}: bodies differ from jobtail's first answer: {bad}")
    say("verified: nginx and jobtail send byte-identical preview bodies for every size")


def measure_http(wrk: str, urls: dict[str, str], headers: dict[str, dict[str, str]], r: SizeResult,
                 plan: Plan) -> None:
    """Throughput (alternating servers run by run) and single-client latency, with wrk."""
    for server in SERVERS:  # warm-up: every jobtail worker caches the encoded preview
        w = run_wrk(wrk, urls[server], 2, 16, 1, headers=headers[server])
        if w.errors:  # say a 401: the numbers would time error answers
            raise RuntimeError(f"{r.label}: {server} warm-up had {w.errors} errors (socket or non-2xx)")
    for run in range(plan.runs):
        for server in SERVERS:
            w = run_wrk(wrk, urls[server], 2, 16, plan.duration, headers=headers[server])
            r.rps[server].append(w.rps)
            r.errors[server] += w.errors
            say(f"  {r.label} run {run + 1}/{plan.runs} {server:7s}: {w.rps:9.1f} req/s "
                f"{w.rps * r.body_bytes / 1e6:7.0f} MB/s" + (f"  ERRORS {w.errors}" if w.errors else ""))
    for server in SERVERS:
        w = run_wrk(wrk, urls[server], 1, 1, plan.latency_seconds, latency=True, headers=headers[server])
        r.errors[server] += w.errors
        r.latency[server] = {"p50": w.percentiles.get("50", float("nan")),
                             "p90": w.percentiles.get("90", float("nan")), "requests": w.requests}
        say(f"  {r.label} one client {server:7s}: p50 {r.latency[server]['p50']:.2f} ms, "
            f"p90 {r.latency[server]['p90']:.2f} ms over {w.requests} requests")


def measure_auth(wrk: str, jt: Jobtail, r: SizeResult, plan: Plan, access: Access) -> None:
    """Single-client latency of the cached preview with a token and with AK/SK, and of /healthz.

    One wrk -t1 -c1 run per variant per round, the order rotating each round, so the machine's
    other load falls on all three alike; the report takes each variant's median p50 over the
    rounds. The AK/SK request is signed once, here (valid for 15 minutes), so the client's signing
    is not counted and the server verifies the signature on every request.
    """
    path = r.task_path() + "/logs/preview"
    signed = presign(jt, "GET", path, access.viewer_key)
    resp = httpx.get(jt.base + path, headers=signed, timeout=60)  # httpx sends the same Host
    if resp.status_code != 200 or len(resp.content) != r.body_bytes:
        raise RuntimeError(f"{r.label}: the AK/SK-signed preview answered {resp.status_code}: {resp.text[:300]}")
    wrk_headers = {k: v for k, v in signed.items() if k != "Host"}  # wrk's own Host is the signed one
    variants = {"token": (jt.base + path, access.read_headers()), "aksk": (jt.base + path, wrk_headers),
                "healthz": (jt.base + "/healthz", {})}
    r.auth = {v: [] for v in AUTH_VARIANTS}
    for v in AUTH_VARIANTS:  # warm-up (and a check that none answers an error)
        if (w := run_wrk(wrk, variants[v][0], 1, 1, 1, headers=variants[v][1])).errors:
            raise RuntimeError(f"{r.label}: {v} answered {w.errors} errors (socket or non-2xx)")
    for round_ in range(plan.auth_rounds):
        shift = round_ % len(AUTH_VARIANTS)
        for v in AUTH_VARIANTS[shift:] + AUTH_VARIANTS[:shift]:
            url, headers = variants[v]
            w = run_wrk(wrk, url, 1, 1, plan.latency_seconds, latency=True, headers=headers)
            if w.errors:
                raise RuntimeError(f"{r.label}: {v} latency run had {w.errors} errors (socket or non-2xx)")
            r.auth[v].append({"p50": w.percentiles.get("50", float("nan")),
                              "p90": w.percentiles.get("90", float("nan")), "requests": w.requests})
    say(f"  {r.label} one client, median p50 of {plan.auth_rounds} rounds: "
        + ", ".join(f"{v} {auth_p50(r, v):.3f} ms" for v in AUTH_VARIANTS))


def auth_p50(r: SizeResult, variant: str) -> float:
    return median([run["p50"] for run in r.auth.get(variant, [])])


def measure_cold(jt: Jobtail, r: SizeResult, plan: Plan, access: Access) -> None:
    """Append 100 bytes over HTTP, then time the GET preview (only the GET), `cold_requests` times.

    Also sums the server processes' `rchar` over each GET alone, so the figure shows what one
    preview reads (about the 5 MiB window, not the log), and times a few warm GETs afterwards with
    the same client, so client overhead can be told apart from the server's work. The GETs carry
    the viewer token; each append is signed (not timed) with the developer AK/SK.
    """
    conn = http.client.HTTPConnection("127.0.0.1", jt.port, timeout=120)
    pids, read = jt.pids(), 0
    preview, append = r.task_path() + "/logs/preview", r.task_path() + "/logs"
    read_headers = access.read_headers()
    try:
        for i in range(COLD_WARMUP + plan.cold_requests):
            line = f"2026-11-27 23:59:59,000 - INFO - [rank0] cold-preview probe {i:06d}".ljust(99) + "\n"
            conn.request("POST", append, body=line.encode(),
                         headers=presign(jt, "POST", append, access.developer_key, line.encode(),
                                         "application/octet-stream"))
            resp = conn.getresponse()
            answer = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{r.label}: append answered {resp.status}: {answer[:300]!r}")
            full = json.loads(answer)["full_size"]
            before, t0 = rchar(pids), time.perf_counter()
            conn.request("GET", preview, headers=read_headers)
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
            conn.request("GET", preview, headers=read_headers)
            conn.getresponse().read()
            r.warm_python_ms.append((time.perf_counter() - t0) * 1e3)
    finally:
        conn.close()
    r.cold_read_bytes = read / max(1, len(r.cold_ms))
    say(f"  {r.label} cold preview: p50 {median(r.cold_ms):.2f} ms, p90 {percentile(r.cold_ms, 0.9):.2f} ms, "
        f"{human(r.cold_read_bytes)} read per GET (same client, cached: p50 {median(r.warm_python_ms):.2f} ms)")


# -- reporting ----------------------------------------------------------------------------------


def report(results: list[SizeResult], rss: dict[str, int], load: list[float]) -> list[str]:
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
    lines = [" | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    by = {r.label: r for r in results}
    if "2g" in by and (others := [label for label in ("5m", "1m", "100m") if label in by]):
        big = median(by["2g"].cold_ms)
        lines.append(f"2 GiB cold preview p50 {big:.2f} ms = " + ", ".join(
            f"{big / median(by[label].cold_ms):.2f}x the {human(SIZES[label])} log's" for label in others)
            + " (5 MiB, 100 MiB and 2 GiB logs return the same 5 MiB window; 1 MiB returns 1 MiB)")
    if (a := by.get(AUTH_SIZE)) is not None and a.auth:
        token, aksk, health = (auth_p50(a, v) for v in AUTH_VARIANTS)
        rounds = len(a.auth["token"])
        lines.append(f"{human(a.size)} cached preview, one client, p50 (median of {rounds} alternating rounds): "
                     f"token {token:.3f} ms, AK/SK {aksk:.3f} ms ({(aksk - token) * 1e3:+.0f} µs), "
                     f"/healthz {health:.3f} ms")
    lines.append("jobtail peak RSS (VmHWM): " + ", ".join(f"{k} {human(v)}" for k, v in rss.items()))
    failed = {f"{r.label}/{s}": n for r in results for s, n in r.errors.items() if n}
    lines.append(f"wrk errors (socket or non-2xx): {failed or 'none'}")
    if load:  # wrk, both servers and whatever else runs share the machine's cores
        lines.append(f"load average (1 min) on {os.cpu_count()} CPUs, sampled before each size and at the end: "
                     + " ".join(f"{x:.2f}" for x in load))
    return lines


def parse_args(argv: list[str] | None = None) -> tuple[Plan, bool]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="sizes 4k,1m,5m,100m; one 3 s run; fewer cold requests")
    p.add_argument("--sizes", help=f"comma-separated subset of {','.join(SIZES)} (default: all; --quick: no 2g)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, configs, server logs)")
    a = p.parse_args(argv)
    labels = a.sizes.split(",") if a.sizes else (["4k", "1m", "5m", "100m"] if a.quick else list(SIZES))
    if unknown := [s for s in labels if s not in SIZES]:
        p.error(f"unknown sizes {unknown}; choose from {list(SIZES)}")
    if a.quick:
        return Plan(labels, duration=3, runs=1, latency_seconds=1, cold_requests=10, auth_rounds=1), a.keep
    return Plan(labels, duration=10, runs=3, latency_seconds=3, cold_requests=40, auth_rounds=3), a.keep


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
    load: list[float] = []  # 1-minute load average before each size and at the end
    with contextlib.ExitStack() as stack:
        if not keep:
            stack.callback(shutil.rmtree, tmp, ignore_errors=True)  # registered first, so runs last
        build_logs(tmp / "data", results)
        access = provision(tmp / "data")
        # No rate limit: the default (200 requests/s per credential and process) would answer most
        # of wrk's requests with 429. This measures the preview path, not the limiter.
        jt = stack.enter_context(Jobtail(tmp / "data", free_port(), plan.workers, tmp / "jobtail.log",
                                         extra=["--rate-limit-per-second", "0"]))
        log_in(jt, access)
        root = tmp / "nginx" / "html"
        root.mkdir(parents=True)
        bodies = fetch_previews(jt, results, root, access)
        ng = stack.enter_context(Nginx(nginx_exe, tmp / "nginx", root, free_port(), f"/{results[0].label}.json"))
        verify_same(jt, ng, results, bodies, access)
        del bodies
        for r in results:
            load.append(os.getloadavg()[0])
            say(f"measuring {human(r.size)} (preview body {r.body_bytes:,} B); load average {load[-1]:.2f}")
            measure_http(wrk, {"jobtail": jt.base + r.task_path() + "/logs/preview",
                               "nginx": f"{ng.base}/{r.label}.json"},
                         {"jobtail": access.read_headers(), "nginx": {}}, r, plan)
            if r.label == AUTH_SIZE:
                measure_auth(wrk, jt, r, plan, access)
            measure_cold(jt, r, plan, access)
        rss = {name: peak_rss(pid) for name, pid in jt.roles().items()}
        load.append(os.getloadavg()[0])
    lines = report(results, rss, load)
    print("\n" + "\n".join(lines), flush=True)
    out = Path(__file__).resolve().parent / "results" / f"preview-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "plan": asdict(plan),
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
                    "jobtail": jobtail.__version__, "nginx": tool_version([nginx_exe, "-v"]),
                    "wrk": tool_version([wrk, "-v"])},
        "units": "latency ms; MB = 1e6 bytes; read bytes = rchar per cold GET over all server processes",
        "auth": (f"jobtail requests carry a viewer token (X-Auth-Token); sizes[{AUTH_SIZE!r}].auth: single-client "
                 "wrk rounds of the cached preview with the token, with a pre-signed AK/SK request, and /healthz"),
        "load_average_1min": load,
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
