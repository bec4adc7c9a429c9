"""SQLite metadata backend: `sqlite:///path/to/file.db`.

WAL mode with `synchronous=FULL`, so an acknowledged append survives a crash or power cut.
The WAL is checkpointed by `SqlLogRecords.checkpoint()` (after seals and from the server's
maintenance thread) rather than inside whichever append crosses 4 MiB. Write transactions
start with `BEGIN IMMEDIATE`: they take SQLite's single write lock up front,
which serialises appends and seals without deadlocks between lock upgrades. Read
transactions start with a deferred `BEGIN` and see one snapshot until they end.

`log_state`, which every log request runs first, and the identity lookups skip SQLAlchemy:
`LocalReads` runs their compiled statements on plain `sqlite3` connections of its own, kept for
reuse (autocommit, so each SELECT is one snapshot of committed data, whichever process committed
it), without a pool checkout and its rollback: ~5 µs instead of ~30 µs, cheap enough for the
event loop.
"""

from __future__ import annotations

import collections
import os
import sqlite3
import stat
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url

from jobtail.core.types import LogState
from jobtail.meta.database import SqlDatabase
from jobtail.meta.file_head import FileHeadLogRecords
from jobtail.meta.sql_logs import _LOG_STATE, _STATE_COLUMNS, _state, raise_storage_errors

BUSY_TIMEOUT_MS = 30_000


def _engine(url: str, begin: str) -> Engine:
    engine = create_engine(url, pool_size=8, max_overflow=24)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        for pragma in (
            f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=FULL",
            "PRAGMA foreign_keys=ON",
            # Copying the WAL into the database (a second write of every byte, with its own
            # fsync) happens in `checkpoint()`, off the appends' commits, not every 4 MiB in one.
            "PRAGMA wal_autocheckpoint=0",
        ):
            dbapi_conn.execute(pragma)

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    raise_storage_errors(engine, full=lambda e: _code(e) == sqlite3.SQLITE_FULL,
                         read_only=lambda e: _code(e) == sqlite3.SQLITE_READONLY)
    return engine


def _code(error: BaseException) -> int | None:
    """The primary SQLite result code of a driver error ("database or disk is full": SQLITE_FULL)."""
    code = getattr(error, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def database_dirs(url: str) -> list[Path]:
    """The directories the SQLite database `url` names keeps its files in (what a job's sandbox
    must hide, `jobtail.runner.sandbox`): the one its path resolves to, where SQLite puts its
    WAL, shared-memory and journal files (it follows a symlink to name them), and the one the
    path names, where jobtail keeps its migration lock and head files (`PATH.lock`,
    `PATH.heads/`). Whole directories, because their entries matter as much as the files: a
    journal planted beside the database is replayed into it when it is next opened. ValueError
    for an in-memory database."""
    path, _ = _path(url)
    return [Path(os.path.realpath(path)).parent, path.parent]


def _path(url: str) -> tuple[Path, bool]:
    """The database file `url` names, and whether it is opened read-only (a `mode=ro` URI)."""
    parsed = make_url(url)
    database = parsed.database
    if not database or database == ":memory:":
        raise ValueError("the SQLite metadata backend needs a file: sqlite:///path/to/jobtail.db")
    if parsed.query.get("uri") == "true" and database.startswith("file:"):  # a SQLite URI filename
        return _uri_path(database), parsed.query.get("mode") == "ro"
    return Path(database), False


def _uri_path(uri: str) -> Path:
    """The file a SQLite URI filename names, read as SQLite reads it (sqlite.org/uri.html): an
    authority of nothing or `localhost`, the path up to `?` or `#`, then `%HH` escapes decoded."""
    rest = uri.removeprefix("file:")
    if rest.startswith("//"):
        authority, slash, rest = rest[2:].partition("/")
        if authority not in ("", "localhost"):
            raise ValueError(f"a SQLite URI names a local file: file:///path, not {uri!r}")
        rest = slash + rest
    path = unquote(rest.split("#", 1)[0].split("?", 1)[0])
    if not path or path == ":memory:":
        raise ValueError("the SQLite metadata backend needs a file: sqlite:///path/to/jobtail.db")
    return Path(path)


def engines(url: str) -> tuple[Engine, Engine]:
    """A (writer, reader) engine pair on the SQLite file named by `url`, creating its directory."""
    path, read_only = _path(url)
    if not read_only:  # a read-only one is opened as it is, never created
        _private_file(path)
    return _engine(url, "BEGIN IMMEDIATE"), _engine(url, "BEGIN")


def _private_file(path: Path) -> None:
    """Create the database file mode 600 (in a directory made mode 700), or take group and other
    bits off an existing one and its WAL and shared-memory files: it holds every credential's
    record and every log's head. SQLite gives the -wal and -shm files the database's mode.

    An existing file is never opened here: closing any descriptor of it would drop the POSIX
    locks this process's SQLite connections hold on it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
            if mode & 0o077:
                file.chmod(mode & 0o700)
        except FileNotFoundError:
            pass


class LocalReads:
    """Reads on plain `sqlite3` connections (see the module docstring), for the hottest
    statements: `log_state` here, the identity lookups (`jobtail.auth.sql_store`). A read takes
    an idle connection or opens one, and gives it back: as many stay open as reads ever ran at
    once (not one per thread a pool ever started). `close()` closes them; a read afterwards
    raises RuntimeError."""

    _StateRow = collections.namedtuple("_StateRow", [column.name for column in _STATE_COLUMNS])  # type: ignore[misc]

    def __init__(self, database: str, *, uri: bool) -> None:
        compiled = _LOG_STATE.compile(dialect=sqlite_dialect.dialect())
        self._state_sql = str(compiled)
        self._state_order = list(compiled.positiontup or ())
        self._database, self._uri = database, uri
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _take(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise RuntimeError("the database is closed")
            if self._idle:
                return self._idle.pop()
        conn = sqlite3.connect(self._database, uri=self._uri, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA query_only=ON")
        return conn

    def _give_back(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.close()

    def fetchone(self, sql: str, parameters: Sequence[Any]) -> Sequence[Any] | None:
        """The first row of `sql` (qmark parameters), read in a snapshot of its own."""
        conn = self._take()
        try:
            row: Sequence[Any] | None = conn.execute(sql, parameters).fetchone()
        finally:
            self._give_back(conn)
        return row

    def log_state(self, project_id: str, job_id: str, task_id: str) -> LogState | None:
        values = {"project_id": project_id, "job_id": job_id, "task_id": task_id}
        row = self.fetchone(self._state_sql, [values[name] for name in self._state_order])
        return None if row is None else _state(self._StateRow._make(row))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def open_database(url: str) -> SqlDatabase:
    """Open (creating if needed) the SQLite database named by `url`.

    The head is chosen here, by the URL: head files beside the database (`PATH.heads/`, see
    `jobtail.meta.file_head`) by default, or rows in the database with `?head=database`."""
    parsed = make_url(url)
    head = parsed.query.get("head", "file")
    if head not in ("file", "database"):
        raise ValueError(f"unknown head {head!r} in {url!r}: use ?head=file (the default) or ?head=database")
    url = parsed.difference_update_query(["head"]).render_as_string(hide_password=False)
    writer, reader = engines(url)
    path, _ = _path(url)
    parsed = make_url(url)
    uri = parsed.query.get("uri") == "true"
    options = urlencode({k: v for k, v in parsed.query.items() if k != "uri"}, doseq=True)  # mode=ro, ...
    reads = LocalReads(f"{parsed.database}?{options}" if uri and options else str(parsed.database), uri=uri)
    # Migrations of this file are serialised by an flock on a file beside it (`jobtail.meta.migrate`).
    lock = path.with_name(path.name + ".lock")
    if head == "database":
        database = SqlDatabase(writer, reader, row_locks=False, schema_lock=lock)
    else:
        heads_dir = path.with_name(path.name + ".heads")
        database = SqlDatabase(writer, reader, row_locks=False, schema_lock=lock,
                               logs=lambda w, r: FileHeadLogRecords(w, r, heads_dir=heads_dir, fetch=reads.fetchone))
    database.logs.hot_log_state = reads.log_state
    database.local_fetch = reads.fetchone
    database.closing.append(reads.close)
    if isinstance(database.logs, FileHeadLogRecords):
        database.closing.append(database.logs.close)
    return database
