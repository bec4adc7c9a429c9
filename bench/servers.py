"""The server `jobtail serve` runs (uvicorn) against granian, each next to nginx in the same round.

    .venv/bin/pip install granian    # not a dependency
    .venv/bin/python bench/servers.py [--runs 3] [--seconds 5]

The decision between the two servers, reproducible: builds a 4 KiB log, provisions a viewer
(`bench/preview.py`'s helpers) and starts, on the same data directory, `jobtail serve --workers 2`
(uvicorn) and `granian --interface asgi --factory --workers 2 --loop uvloop` running the same app
factory (`jobtail.cli.server:app_from_env`) with the same `JOBTAIL_*` settings and a metrics
directory of its own, and nginx serving the same bytes as static files. Measures `/healthz` and
the cached 4 KiB preview with a token, `wrk -t2 -c16`; each round runs uvicorn, granian and nginx
(the two servers' order alternating round by round). Prints medians, each server's ratio to nginx
(median of the rounds' ratios, each against the nginx run of its round), granian / uvicorn, and
CPU time per request (utime + stime of all the server's processes over the run, from /proc): on a
machine shared with other work, a server with more threads takes a larger share of the cores,
which req/s alone hides.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside this file
from _harness import Jobtail, Nginx, Server, _http_ok, ensure_tools, exit_on_sigterm, free_port, median, run_wrk, say
from jobtail import metrics
from jobtail.cli.server import FACTORY
from preview import SizeResult, build_logs, log_in, provision

SERVERS = ("uvicorn", "granian", "nginx")


class Granian(Server):
    """granian on the same app factory: ASGI, uvloop, no access log."""

    name = "granian"

    def __init__(self, data_dir: Path, port: int, log_path: Path) -> None:
        super().__init__(log_path)
        self.data_dir, self.port = data_dir, port
        self.base = f"http://127.0.0.1:{port}"
        os.environ.update({"JOBTAIL_DATA_DIR": str(data_dir), "JOBTAIL_RATE_LIMIT_PER_SECOND": "0",
                           "JOBTAIL_EXECUTOR": "none", "JOBTAIL_LOG_LEVEL": "warning", "JOBTAIL_WORKERS": "2"})
        metrics.prepare_multiprocess(log_path.parent / "granian-metrics")  # as `serve` does for --workers 2

    def command(self) -> list[str]:
        return [str(Path(sys.executable).parent / "granian"), "--interface", "asgi", "--factory", "--workers", "2",
                "--loop", "uvloop", "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log",
                "--log-level", "warning", FACTORY]

    def ready(self) -> bool:
        return _http_ok(self.base + "/healthz")


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5)
    a = p.parse_args(argv)
    exit_on_sigterm()
    for name in [n for n in os.environ if n.startswith("JOBTAIL_")]:
        del os.environ[name]
    nginx_exe, wrk = ensure_tools()
    tmp = Path(tempfile.mkdtemp(prefix="jobtail-bench-servers-", dir="/tmp"))
    tmp.chmod(0o755)
    log = SizeResult("4k", 4 * 1024)
    figures = ("healthz", "4k")
    rps: dict[str, dict[str, list[float]]] = {f: {s: [] for s in SERVERS} for f in figures}
    cpu_us: dict[str, dict[str, list[float]]] = {f: {s: [] for s in SERVERS} for f in figures}
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        build_logs(tmp / "data", [log])
        access = provision(tmp / "data")
        uv = stack.enter_context(Jobtail(tmp / "data", free_port(), 2, tmp / "uvicorn.log",
                                         extra=["--rate-limit-per-second", "0", "--executor", "none"]))
        gr = stack.enter_context(Granian(tmp / "data", free_port(), tmp / "granian.log"))
        log_in(uv, access)
        paths = {"healthz": ("/healthz", {}), "4k": (log.task_path() + "/logs/preview", access.read_headers())}
        root = tmp / "nginx" / "html"
        root.mkdir(parents=True)
        for figure, (path, headers) in paths.items():
            resp = httpx.get(uv.base + path, headers=headers, timeout=60)
            resp.raise_for_status()
            (root / f"{figure}.json").write_bytes(resp.content)
        ng = stack.enter_context(Nginx(nginx_exe, tmp / "nginx", root, free_port(), "/healthz.json"))
        servers: dict[str, Server] = {"uvicorn": uv, "granian": gr, "nginx": ng}
        bases = {"uvicorn": uv.base, "granian": gr.base}
        urls = {(f, s): (ng.base + f"/{f}.json" if s == "nginx" else bases[s] + path)
                for f, (path, _) in paths.items() for s in SERVERS}
        for (figure, server), url in urls.items():  # warm-up, and a check that nothing answers an error
            if (w := run_wrk(wrk, url, 2, 16, 1, headers=paths[figure][1])).errors:
                raise RuntimeError(f"{server} {figure}: {w.errors} errors in the warm-up")
        for run in range(a.runs):
            for figure, (_, headers) in paths.items():
                order = ["uvicorn", "granian"] if run % 2 == 0 else ["granian", "uvicorn"]
                for server in [*order, "nginx"]:
                    pids = servers[server].pids()
                    before = cpu_seconds(pids)
                    w = run_wrk(wrk, urls[figure, server], 2, 16, a.seconds, headers=headers)
                    if w.errors:
                        raise RuntimeError(f"{server} {figure}: {w.errors} errors")
                    rps[figure][server].append(w.rps)
                    cpu_us[figure][server].append((cpu_seconds(pids) - before) / max(1, w.requests) * 1e6)
                    say(f"run {run + 1}/{a.runs} {figure:7s} {server:7s} {w.rps:9.1f} req/s "
                        f"{cpu_us[figure][server][-1]:6.0f} µs CPU/request")
    print(f"\nwrk -t2 -c16 -d{a.seconds:g}s, medians of {a.runs} rounds (uvicorn and granian alternating, then nginx), "
          "2 workers each")
    print("| request | granian req/s | uvicorn req/s | nginx req/s | granian / nginx | uvicorn / nginx | granian / uvicorn "
          "| CPU µs/request granian / uvicorn / nginx |")
    print("|---|---|---|---|---|---|---|---|")
    for figure, by in rps.items():
        cpu = cpu_us[figure]

        def ratio(server: str, by: dict[str, list[float]] = by) -> float:
            return median([s / n for s, n in zip(by[server], by["nginx"], strict=True)])

        print(f"| {figure} | {median(by['granian']):,.0f} | {median(by['uvicorn']):,.0f} | {median(by['nginx']):,.0f} | "
              f"{ratio('granian'):.3f} | {ratio('uvicorn'):.3f} | {median(by['granian']) / median(by['uvicorn']):.2f} | "
              f"{median(cpu['granian']):.0f} / {median(cpu['uvicorn']):.0f} / {median(cpu['nginx']):.0f} |")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
