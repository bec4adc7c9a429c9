"""Benchmark what the per-request metrics cost.

    .venv/bin/python bench/metrics.py [--rounds 3] [--seconds 3] [--main /work/main]

Two measurements:

1. In-process, exact: an ASGI app that answers a fixed 200, called 20,000 times on one event loop,
   bare and inside `jobtail.http.monitoring.RequestMetrics` (what every request pays: two clock
   reads, one dictionary lookup, one histogram observation), alternating, median of `rounds`;
   once with the in-memory registry (`--workers 1`) and once in a child process in
   prometheus-client's multiprocess mode (`--workers N`), where each observation writes to an
   mmapped file.
2. Through the real server: `jobtail serve` of this checkout against that of `--main` (the same
   venv, `PYTHONPATH=MAIN/src`: the code before metrics), one worker, rate limit off, wrk
   `-t1 -c8` on `/healthz` and on the preview of a 4 KiB log (with a token), alternating,
   median req/s of `rounds`. On the shared 2-core machine these differ by less than their noise;
   part 1 is the figure to trust.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import ensure_tools, free_port, run_wrk, say

CALLS = 20_000


async def _drive(app: Any, calls: int) -> float:
    scope = {"type": "http", "method": "GET", "path": "/healthz", "headers": [], "operation": "Health"}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    started = time.perf_counter()
    for _ in range(calls):
        await app(dict(scope), receive, send)
    return (time.perf_counter() - started) / calls * 1e6


async def _bare(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def in_process(rounds: int) -> dict[str, float]:
    from jobtail.http.monitoring import RequestMetrics

    wrapped = RequestMetrics(_bare)
    bare, timed = [], []
    for _ in range(rounds):
        bare.append(asyncio.run(_drive(_bare, CALLS)))
        timed.append(asyncio.run(_drive(wrapped, CALLS)))
    return {"bare_us": statistics.median(bare), "instrumented_us": statistics.median(timed),
            "cost_us": statistics.median(t - b for t, b in zip(timed, bare, strict=True))}


def _env(main: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBTAIL_")}
    if main is not None:
        env["PYTHONPATH"] = str(main / "src")
    return env


def _jobtail(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "jobtail", *args], env=env, input=stdin, capture_output=True,
                          text=True, check=True)
    return done.stdout


class Served:
    def __init__(self, name: str, root: Path, main: Path | None) -> None:
        self.name, self.env, self.data = name, _env(main), root / name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        data = ["--data-dir", str(self.data)]
        password = secrets.token_urlsafe(18)
        _jobtail(self.env, "admin", "project", "create", "--id", "bench", "bench", *data)
        _jobtail(self.env, "admin", "user", "create", "bench", "--password-stdin", *data, stdin=password + "\n")
        _jobtail(self.env, "admin", "user", "grant", "bench", "--project", "bench", "--role", "developer", *data)
        job = _jobtail(self.env, "admin", "job", "create", "--project", "bench", "--name", "m", *data).strip()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobtail", "serve", *data, "--port", str(self.port), "--executor", "none",
             "--rate-limit-per-second", "0", "--log-level", "warning"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"{name}: jobtail serve did not start")
            time.sleep(0.1)
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "bench",
                "password": password}}}, "scope": {"project": {"id": "bench"}}}}
        self.token = httpx.post(self.base + "/v3/auth/tokens", json=body, timeout=30).headers["X-Subject-Token"]
        self.preview = f"{self.base}/v2/bench/training-jobs/{job}/tasks/worker-0/logs/preview"
        logs = self.preview.removesuffix("/preview")
        line = b"step 000001 loss 0.123456 lr 0.0001 grad_norm 1.2345\n"
        appended = httpx.post(logs, content=line * (4096 // len(line)), headers={"X-Auth-Token": self.token})
        assert appended.status_code == 200, appended.text
        assert httpx.get(self.preview, headers={"X-Auth-Token": self.token}).status_code == 200

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def through_servers(root: Path, main: Path, rounds: int, seconds: float) -> dict[str, Any]:
    _nginx, wrk = ensure_tools()
    servers = [Served("metrics", root, None), Served("main", root, main)]
    rps: dict[str, list[float]] = {}
    try:
        for round_ in range(rounds):
            say(f"wrk round {round_ + 1}/{rounds}")
            for server in servers if round_ % 2 == 0 else servers[::-1]:  # ABBA: drift hits both alike
                for what, url, headers in (("healthz", server.base + "/healthz", {}),
                                           ("preview 4 KiB", server.preview, {"X-Auth-Token": server.token})):
                    result = run_wrk(wrk, url, 1, 8, seconds, headers=headers)
                    assert result.errors == 0, f"{server.name} {what}: {result.errors} errors"
                    rps.setdefault(f"{what} {server.name}", []).append(result.rps)
    finally:
        for server in servers:
            server.stop()
    medians = {label: statistics.median(values) for label, values in rps.items()}
    for what in ("healthz", "preview 4 KiB"):
        after, before = medians[f"{what} metrics"], medians[f"{what} main"]
        medians[f"{what} µs per request, metrics - main"] = (1 / after - 1 / before) * 1e6
    return {"rps": rps, "medians": medians}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--main", type=Path, default=Path("/work/main"),
                        help="a checkout (or `git archive` of src/) of the code before metrics")
    parser.add_argument("--in-process-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process_only:  # the child of the multiprocess measurement
        print(json.dumps(in_process(args.rounds)))
        return
    results: dict[str, Any] = {"in_process": in_process(args.rounds)}
    multiproc = Path(tempfile.mkdtemp(prefix="jobtail-bench-metrics-"))
    root = Path(tempfile.mkdtemp(prefix="jobtail-bench-servers-"))
    try:
        child = subprocess.run([sys.executable, __file__, "--in-process-only", "--rounds", str(args.rounds)],
                               env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)},
                               capture_output=True, text=True, check=True)
        results["in_process_multiprocess"] = json.loads(child.stdout)
        results["servers"] = through_servers(root, args.main, args.rounds, args.seconds)
    finally:
        shutil.rmtree(multiproc, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
    for mode in ("in_process", "in_process_multiprocess"):
        r = results[mode]
        print(f"{mode:26} bare {r['bare_us']:.2f} µs, with RequestMetrics {r['instrumented_us']:.2f} µs: "
              f"+{r['cost_us']:.2f} µs per request")
    for label, value in results["servers"]["medians"].items():
        print(f"{label:48} {value:10.1f}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"metrics-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
