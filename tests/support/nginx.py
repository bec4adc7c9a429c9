"""nginx (Debian's package) as the replicas' round-robin balancer, configured from the very file
docs/deploy.md shows (`docs/deploy/nginx-jobtail.conf`), on a free port, in the foreground."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx

TEMPLATE = Path(__file__).resolve().parents[2] / "docs" / "deploy" / "nginx-jobtail.conf"

_MAIN = """\
worker_processes 2;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    include {prefix}/jobtail.conf;
}}
"""


def find_nginx() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def render(replicas: list[str], listen: str) -> str:
    """The deploy guide's nginx file for `replicas` (HOST:PORT each), listening on `listen`."""
    servers = "\n    ".join(f"server {replica} max_fails=1 fail_timeout=5s;" for replica in replicas)
    return TEMPLATE.read_text().replace("@SERVERS@", servers).replace("@LISTEN@", listen)


class Balancer:
    """nginx on `port` in front of `replicas`; `stop()` is idempotent."""

    def __init__(self, prefix: Path, replicas: list[str], port: int) -> None:
        exe = find_nginx()
        assert exe is not None, "nginx is missing: scripts/test installs Debian's nginx package"
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        (prefix / "jobtail.conf").write_text(render(replicas, f"127.0.0.1:{port}"))
        (prefix / "nginx.conf").write_text(_MAIN.format(prefix=prefix))
        self.url = f"http://127.0.0.1:{port}"
        self.prefix = prefix
        self.proc = subprocess.Popen([exe, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e",
                                      str(prefix / "error.log")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"nginx did not come up: {(prefix / 'error.log').read_text(errors='replace')}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
