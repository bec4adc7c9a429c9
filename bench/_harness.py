"""Process and measurement plumbing for bench/preview.py: tools, servers, wrk, /proc.

Every server is a context manager that stops what it started (and only that) on exit, whether
the benchmark finished, failed or was interrupted.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def say(message: str) -> None:
    """Progress output: one line, flushed at once (the run takes minutes)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- tools ------------------------------------------------------------------------------------


def _find(name: str) -> str | None:
    # Debian puts nginx in /usr/sbin, which is not on every PATH.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def ensure_tools() -> tuple[str, str]:
    """Paths of nginx and wrk, installing the Debian packages first when either is missing.

    `apt-get update` runs only when a plain install fails (stale package lists), because it is
    slow and usually unnecessary. Raises RuntimeError when the tools still cannot be found.
    """
    missing = [pkg for pkg in ("nginx", "wrk") if _find(pkg) is None]
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
        say(f"{', '.join(missing)} not found; running: {' '.join(install)}")
        if subprocess.run(install, env=env).returncode != 0:
            say("install failed; running apt-get update, then the install again")
            subprocess.run(["apt-get", "update"], env=env, check=True)
            subprocess.run(install, env=env, check=True)
    nginx, wrk = _find("nginx"), _find("wrk")
    if nginx is None or wrk is None:
        raise RuntimeError("nginx and wrk are needed: apt-get install -y nginx wrk")
    return nginx, wrk


def tool_version(argv: list[str]) -> str:
    """First line a tool prints about its version (nginx and wrk print it to stderr)."""
    done = subprocess.run(argv, capture_output=True, text=True)
    return (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr).strip() else "?"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- /proc ------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 = state), or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw[raw.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """Live descendants of `pid` (children, grandchildren, ...), found by scanning /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(int(entry))) is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _identity(pid: int) -> str | None:
    """The process start time: a pid plus this names one process, even after pid reuse."""
    fields = _stat_fields(pid)
    return None if fields is None or fields[0] == "Z" else fields[19]


def cmdline(pid: int) -> str:
    """The command line of `pid`, arguments joined by spaces ("" if it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def rchar(pids: list[int]) -> int:
    """Sum of `rchar` (bytes read through read-like syscalls, page cache hits included)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/io").read_text().splitlines():
                if line.startswith("rchar:"):
                    total += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def peak_rss(pid: int) -> int:
    """VmHWM of `pid` in bytes (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


# -- servers ----------------------------------------------------------------------------------


class Server:
    """A child process we started (in its own session, so a terminal Ctrl-C reaches only us
    and the shutdown order stays ours). Subclasses build the command and the readiness check."""

    name = "server"
    stop_signal = signal.SIGTERM

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._known: dict[int, str] = {}  # pid -> start time of every process seen in our tree

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def pids(self) -> list[int]:
        """The server's processes: the one we started and its live descendants."""
        assert self.proc is not None
        pids = [self.proc.pid, *descendants(self.proc.pid)]
        for pid in pids:
            if pid not in self._known and (ident := _identity(pid)) is not None:
                self._known[pid] = ident
        return pids

    def __enter__(self) -> Server:
        argv = self.command()
        say(f"starting {self.name}: {' '.join(argv)}")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 30
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                self.stop()  # __exit__ will not run: leave nothing behind
                raise RuntimeError(f"{self.name} did not become ready; its log ends:\n{tail}")
            time.sleep(0.1)
        say(f"{self.name} ready (pids {self.pids()})")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 15.0) -> None:
        """Ask politely, wait up to `timeout`, then SIGKILL whatever of our tree is still alive."""
        if self.proc is None:
            return
        self.pids()  # remember the current workers before the parent goes away
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                say(f"{self.name} still running after {timeout:.0f} s: SIGKILL")
                self.proc.kill()
                self.proc.wait()
        deadline = time.monotonic() + 5
        for pid, ident in self._known.items():  # orphaned workers, checked against pid reuse
            while _identity(pid) == ident and time.monotonic() < deadline:
                time.sleep(0.05)
            if _identity(pid) == ident:
                os.kill(pid, signal.SIGKILL)
        say(f"{self.name} stopped")
        self.proc = None


def jobtail_exe() -> str:
    """The `jobtail` script of the venv this script runs in (else the one on PATH)."""
    exe = Path(sys.executable).parent / "jobtail"  # not resolved: the venv's bin/ holds the script
    return str(exe if exe.exists() else shutil.which("jobtail") or "jobtail")


def jobtail_admin(data_dir: Path, *args: str, stdin: str | None = None) -> str:
    """Run `jobtail admin ARGS --data-dir DATA_DIR` and return its stdout; RuntimeError if it fails."""
    argv = [jobtail_exe(), "admin", *args, "--data-dir", str(data_dir)]
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        shown = " ".join(argv[1:])
        raise RuntimeError(f"`jobtail {shown}` failed ({done.returncode}): {done.stdout}{done.stderr}")
    return done.stdout


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


class Jobtail(Server):
    """`jobtail serve` from the venv this script runs in."""

    name = "jobtail"

    def __init__(self, data_dir: Path, port: int, workers: int, log_path: Path,
                 extra: Sequence[str] = ()) -> None:
        super().__init__(log_path)
        self.data_dir, self.port, self.workers, self.extra = data_dir, port, workers, list(extra)
        self.base = f"http://127.0.0.1:{port}"

    def command(self) -> list[str]:
        return [jobtail_exe(), "serve",
                "--data-dir", str(self.data_dir), "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", str(self.workers), "--log-level", "warning", *self.extra]

    def ready(self) -> bool:
        # Wait for every worker too: the first one up answers /healthz before the second exists.
        return _http_ok(self.base + "/healthz") and (
            self.workers == 1 or sum(name.startswith("worker") for name in self.roles()) >= self.workers)

    def roles(self) -> dict[str, int]:
        """Name -> pid: "master", "worker0".., and uvicorn's multiprocessing "resource_tracker"."""
        pids = self.pids()
        named, n = {"master": pids[0]}, 0
        for pid in pids[1:]:
            line = cmdline(pid)
            if "spawn_main" in line:
                named[f"worker{n}"], n = pid, n + 1
            else:
                named["resource_tracker" if "resource_tracker" in line else f"pid{pid}"] = pid
        return named


NGINX_CONF = """\
# Written by bench/preview.py: static files on loopback, the "physical limit" baseline.
worker_processes 2;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    types {{ }}
    default_type application/json;
    sendfile on;
    tcp_nopush on;
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""


class Nginx(Server):
    """Debian's nginx in the foreground (`daemon off`), so we hold its master's pid.

    SIGQUIT is what `nginx -s quit` sends: finish open requests, then exit.
    """

    name = "nginx"
    stop_signal = signal.SIGQUIT

    def __init__(self, exe: str, prefix: Path, root: Path, port: int, probe: str) -> None:
        super().__init__(prefix / "nginx.log")
        self.exe, self.prefix, self.root, self.port = exe, prefix, root, port
        self.base = f"http://127.0.0.1:{port}"
        self.probe = probe  # a path that must answer 200 once nginx serves
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(NGINX_CONF.format(prefix=prefix, root=root, port=port))

    def command(self) -> list[str]:
        # -e: the startup error log, before the config is read (default is /var/log/nginx).
        return [self.exe, "-p", str(self.prefix), "-c", str(self.conf), "-e", str(self.prefix / "error.log")]

    def ready(self) -> bool:
        return _http_ok(self.base + self.probe)


# -- wrk --------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass
class Wrk:
    """One wrk run, parsed. Latencies in ms; `errors` counts socket errors and non-2xx/3xx."""

    requests: int
    seconds: float
    rps: float
    errors: int
    percentiles: dict[str, float] = field(default_factory=dict)  # "50" -> ms, with --latency


def run_wrk(wrk: str, url: str, threads: int, connections: int, seconds: float, latency: bool = False,
            headers: Mapping[str, str] | None = None) -> Wrk:
    """Run wrk against `url`, sending `headers` with every request (`-H`; wrk adds `Host:
    host:port` itself unless given one); raise RuntimeError if wrk fails or its output cannot be
    parsed."""
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s"]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    done = subprocess.run([*argv, *(["--latency"] if latency else []), url], capture_output=True, text=True)
    out = done.stdout
    m_req = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", out)
    m_rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if done.returncode != 0 or not m_req or not m_rps:
        raise RuntimeError(f"wrk failed ({done.returncode}): {out}{done.stderr}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    if m_non2xx := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(m_non2xx.group(1))
    pct = {p: float(v) * _UNITS[u] for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)}
    return Wrk(int(m_req.group(1)), float(m_req.group(2)) * _UNITS[m_req.group(3)] / 1e3,
               float(m_rps.group(1)), errors, pct)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    at = q * (len(ordered) - 1)
    lo = int(at)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (at - lo)


def exit_on_sigterm() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so `with` blocks stop the servers (Ctrl-C already does)."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


__all__ = ["Jobtail", "Nginx", "Wrk", "ensure_tools", "exit_on_sigterm", "free_port", "jobtail_admin",
           "jobtail_exe", "median", "peak_rss", "percentile", "rchar", "run_wrk", "say", "tool_version"]
