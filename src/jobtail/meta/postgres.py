"""PostgreSQL metadata backend: `postgresql://user:password@host:port/database`.

Appends and seals lock their task log row (`SELECT ... FOR UPDATE`), so writers to different
task logs never wait for each other. Reads run in REPEATABLE READ transactions: one snapshot
per read plan. Head bytes are compressed with lz4, which is about five times faster than the
default pglz on log text (see the README's architecture notes).
"""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from jobtail.core.errors import StorageNotWritable
from jobtail.meta.database import SqlDatabase
from jobtail.meta.sql_logs import raise_storage_errors

DISK_FULL, READ_ONLY_TRANSACTION = "53100", "25006"  # SQLSTATEs: disk_full, read_only_sql_transaction


def engines(url: str) -> tuple[Engine, Engine]:
    """A (writer, reader) engine pair on the database named by `url` (driver psycopg 3)."""
    parsed = make_url(url).set(drivername="postgresql+psycopg")
    writer = create_engine(parsed, pool_size=10, max_overflow=30, pool_pre_ping=True)
    raise_storage_errors(writer, full=lambda e: getattr(e, "sqlstate", None) == DISK_FULL,
                         read_only=lambda e: getattr(e, "sqlstate", None) == READ_ONLY_TRANSACTION)
    return writer, writer.execution_options(isolation_level="REPEATABLE READ")


def open_database(url: str) -> SqlDatabase:
    """Connect to the database named by `url` and create the schema if missing."""
    writer, reader = engines(url)
    database = SqlDatabase(writer, reader, row_locks=True)
    try:
        with writer.begin() as conn:
            conn.execute(text("ALTER TABLE head_chunks ALTER COLUMN data SET COMPRESSION lz4"))
    except DBAPIError:  # a server built without lz4 keeps pglz: slower, still correct
        pass
    except StorageNotWritable:  # a read-only database: writes fail clearly (`check_writable` at start)
        pass
    return database
