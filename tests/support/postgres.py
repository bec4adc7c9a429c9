"""Throwaway PostgreSQL server for the test suite (no pytest fixtures here; conftest wraps it).

``start_postgres()`` returns a running server with an empty ``jobtail_test`` database, or
raises ``PostgresUnavailable`` (no binaries/user: callers may skip) or ``PostgresError``
(server failed: callers should fail; the message carries the server log tail).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pathlib
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from urllib.parse import quote

import psycopg
from psycopg import sql


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be used on this machine at all; the message says why."""


class PostgresError(RuntimeError):
    """The binaries exist but initdb/start/SQL failed; the message includes the log tail."""


def find_pg_bin() -> pathlib.Path | None:
    """Return the real directory holding initdb, pg_ctl and postgres, or None if there is none.

    PATH first (CI symlinks into /usr/local/bin), then /usr/lib/postgresql/<ver>/bin, newest
    first. Symlinks are resolved: pg_ctl and initdb look for ``postgres`` beside their real path.
    """
    on_path = shutil.which("pg_ctl")
    candidates = [pathlib.Path(on_path).resolve().parent] if on_path else []
    candidates += sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin"), reverse=True,
                         key=lambda p: [int(n) for n in re.findall(r"\d+", p.parent.name)])
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def _postgres_user() -> pwd.struct_passwd:
    """Return the ``postgres`` account, creating a system user if it is missing (root only)."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam("postgres")
    cmd = ["useradd", "--system", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", "postgres"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    try:  # a parallel session may have created it first, so only the lookup decides
        return pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable(f"cannot create postgres user: {res.stderr.strip()}") from None


def _free_port() -> int:
    """A port that was free a moment ago; start retries in case someone grabs it meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """A running throwaway server. Context manager; ``stop()`` is idempotent and never raises."""

    def __init__(self, bindir: pathlib.Path, root: pathlib.Path) -> None:
        self.bindir, self.root, self.datadir, self.log = bindir, root, root / "data", root / "server.log"
        self.port, self.url = 0, ""
        self._pid: int | None = None
        self._stopped, self._owner_pid = False, os.getpid()
        self.durable = False
        atexit.register(self._atexit)  # a crashed session must not leave a server behind

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    def _fail(self, what: str, output: str = "") -> PostgresError:
        try:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            tail = "(no server log)"
        return PostgresError(f"{what}\n{output.strip()}\n--- server log tail ({self.log}) ---\n{tail}")

    def _run(self, tool: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        # Postgres refuses to run as root, so root drops to the postgres user. cwd is our temp
        # dir because that user may not be able to enter the caller's cwd. Stray PG* variables
        # (PGDATA, PGPORT, ...) would silently redirect pg_ctl, so they are dropped.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        try:
            return subprocess.run([*prefix, str(self.bindir / tool), *args], cwd=self.root, env=env,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise self._fail(f"{tool} did not run: {exc}") from exc

    def _start(self) -> None:
        res = self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "-A", "trust",
                        "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")  # no-sync: throwaway data
        if res.returncode:
            raise self._fail("initdb failed", res.stdout + res.stderr)
        for attempt in range(5):
            self.port = _free_port()
            self.log = self.root / f"server-{attempt}.log"  # fresh log so old bind errors don't match
            opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c max_connections=200"
            if not self.durable:  # throwaway test data: skip the syncs
                opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            res = self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.log), "-w", "-t", "30",
                            "-o", opts, "start")
            if res.returncode == 0:
                break
            with contextlib.suppress(OSError):  # port stolen between probe and bind: try another
                if "could not bind" in self.log.read_text(errors="replace") and attempt < 4:
                    continue
            raise self._fail(f"pg_ctl start failed (port {self.port})", res.stdout + res.stderr)
        self._pid = int((self.datadir / "postmaster.pid").read_text().split()[0])
        self.url = self.create_database("jobtail_test")

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` (must not exist) and return its URL."""
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        try:  # CREATE DATABASE cannot run inside a transaction, hence autocommit
            with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                                 autocommit=True, connect_timeout=10) as conn:
                conn.execute(query)
        except psycopg.Error as exc:
            raise self._fail(f"CREATE DATABASE {name!r} failed: {exc}") from exc
        return self._url(name)

    def stop(self) -> None:
        """Stop the server (immediate mode) and delete its temp dir. Idempotent; never raises."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self._atexit)
        stopped = False
        if (self.datadir / "postmaster.pid").exists():
            with contextlib.suppress(PostgresError):
                res = self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "-t", "30",
                                "stop", timeout=60)
                stopped = res.returncode == 0
        # Fallback if pg_ctl could not stop it: SIGQUIT is postgres' own immediate shutdown.
        # Check /proc first so a recycled pid belonging to someone else is never signalled.
        if not stopped and self._pid is not None:
            with contextlib.suppress(OSError):
                if str(self.datadir).encode() in pathlib.Path(f"/proc/{self._pid}/cmdline").read_bytes():
                    os.kill(self._pid, signal.SIGQUIT)
        shutil.rmtree(self.root, ignore_errors=True)

    def _atexit(self) -> None:
        if os.getpid() == self._owner_pid:  # a forked child exiting must not kill our server
            self.stop()


def start_postgres(durable: bool = False) -> PostgresServer:
    """Start a throwaway server with an empty ``jobtail_test`` database; caller must stop() it.

    ``durable``: keep PostgreSQL's default fsync and commit settings (benchmarks); the tests
    turn them off."""
    bindir = find_pg_bin()
    if bindir is None:
        raise PostgresUnavailable("initdb/pg_ctl/postgres not found on PATH or in /usr/lib/postgresql/*/bin")
    owner = _postgres_user() if os.geteuid() == 0 else None
    # Explicitly under /tmp: $TMPDIR may not be traversable by the postgres user.
    root = pathlib.Path(tempfile.mkdtemp(prefix="jobtail-pg-", dir="/tmp"))
    os.chmod(root, 0o755)  # mkdtemp makes 0700; the server user must be able to enter it
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    server = PostgresServer(bindir, root)
    server.durable = durable
    try:
        server._start()
    except BaseException:
        server.stop()  # don't leak a half-started server or its temp dir
        raise
    return server
