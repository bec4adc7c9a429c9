"""One metadata database: its engine pair, chosen by URL, and the record stores on it.

`open_database(url)` makes the (writer, reader) engine pair of the backend the URL names
(`jobtail.meta.sqlite`, `jobtail.meta.postgres`; their driver libraries are imported only then),
brings its schema to this build's revision (`jobtail.meta.migrate`), and offers the job records
and the log records over those engines. Whatever else lives in the same database (the identity
store) takes `writer` and `reader` from here, so one process holds one engine pair per database.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text, update

from jobtail.meta import migrate
from jobtail.meta.schema import task_logs
from jobtail.meta.sql_jobs import SqlJobRecords
from jobtail.meta.sql_leases import SqlExecutorLeases
from jobtail.meta.sql_logs import SqlLogRecords

BACKENDS = {
    "sqlite": "jobtail.meta.sqlite",
    "postgresql": "jobtail.meta.postgres",
    "postgres": "jobtail.meta.postgres",
}


def scheme_of(url: str) -> str:
    """The backend name of a database URL (`sqlite`, `postgresql`, ...), driver suffix removed."""
    return url.split(":", 1)[0].split("+", 1)[0].lower()


class SqlDatabase:
    """The engines of one database and the record stores over them; `close()` disposes of them."""

    def __init__(self, writer: Engine, reader: Engine, *, row_locks: bool, schema_lock: Path | None = None,
                 logs: Callable[[Engine, Engine], SqlLogRecords] | None = None) -> None:
        self.writer = writer
        self.reader = reader
        self.closing: list[Callable[[], None]] = []  # what a backend opened beside the engines
        try:
            migrate.upgrade(writer, schema_lock)
        except BaseException:  # a refused or failed upgrade: nothing stays connected
            self.close()
            raise
        self.logs = logs(writer, reader) if logs else SqlLogRecords(writer, reader, row_locks=row_locks)
        self.jobs = SqlJobRecords(writer, reader, turns=self.logs.turns)
        self.leases = SqlExecutorLeases(writer)
        # (sql, parameters) -> first row, without SQLAlchemy: for the identity lookups (SQLite)
        self.local_fetch: Callable[[str, Sequence[Any]], Sequence[Any] | None] | None = None

    @property
    def dialect(self) -> str:
        return self.writer.dialect.name

    def check_writable(self) -> None:
        """Raise StorageNotWritable unless the database accepts a write transaction (one that
        changes nothing): for a start-up check."""
        # BEGIN IMMEDIATE (SQLite) takes the write lock; the UPDATE needs write access even when,
        # as here, it matches no row.
        with self.writer.begin() as conn:
            conn.execute(update(task_logs).where(task_logs.c.id == -1).values(end_offset=task_logs.c.end_offset))

    def ping(self) -> None:
        """One round trip to the database (raises whatever the driver raises when it does not answer)."""
        with self.reader.connect() as conn:
            conn.execute(text("SELECT 1"))

    def close(self) -> None:
        """Release every connection. Idempotent."""
        for close in self.closing:
            close()
        self.writer.dispose()
        self.reader.dispose()


def open_database(url: str) -> SqlDatabase:
    """Open (creating or upgrading its schema if needed) the database named by `url`: `sqlite:///PATH` or
    `postgresql://…`."""
    scheme = scheme_of(url)
    if scheme not in BACKENDS:
        raise ValueError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://…")
    backend = importlib.import_module(BACKENDS[scheme])
    database: SqlDatabase = backend.open_database(url)
    return database
