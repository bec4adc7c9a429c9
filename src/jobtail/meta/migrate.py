"""Bring a metadata database's schema to this build's revision, with Alembic, under a lock.

The revisions are `jobtail/meta/migrations/versions/` (how to add one: the README's architecture
notes, "How to change the schema"). `upgrade(engine)` runs whatever the database lacks, so every
opener of a database — `jobtail serve` first, `jobtail admin …`, tests — finds this build's
schema:

- A database at this build's head costs one query (no lock is taken).
- Otherwise the migrating process holds a lock while it looks again and upgrades, so replicas
  that start together do not race: PostgreSQL's transaction-level advisory lock (the whole
  upgrade is one transaction: transactional DDL), or an `flock` on a file beside a SQLite
  database (foreign keys are off while its revisions run, as Alembic's batch mode needs, and
  checked afterwards).
- A database whose revision this build does not know was upgraded by a newer jobtail:
  `SchemaTooNew`, and nothing is touched.
- A database made before migrations existed (the first release, or builds up to this one) has
  no `alembic_version` table: its tables say which revision it is at, it is stamped so, and the
  revisions after it run.
"""

from __future__ import annotations

import fcntl
import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, inspect, text

from jobtail.core.errors import SchemaTooNew

SCRIPTS = Path(__file__).with_name("migrations")
_ADVISORY_KEY = 0x6A6F627461696C  # "jobtail": one lock for every jobtail schema change in a database


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The newest revision this build knows (its schema)."""
    found = _scripts().get_current_head()
    assert found is not None, "no revisions in jobtail/meta/migrations/versions"
    return found


def revision(conn: Connection) -> str | None:
    """The database's recorded revision; None when it has no `alembic_version` table (or is empty)."""
    revision: str | None = MigrationContext.configure(conn).get_current_revision()
    return revision


def _known(found: str) -> bool:
    try:
        return _scripts().get_revision(found) is not None
    except CommandError:
        return False


def _unversioned(conn: Connection) -> str | None:
    """The revision whose schema a database without `alembic_version` has: None for an empty
    one, "0001" for the first release's, "0002" for the builds after it, "0003" for those with
    running records (issue 11), the last before migrations."""
    inspector = inspect(conn)
    if not inspector.has_table("task_logs"):
        return None
    if "running_records" in {column["name"] for column in inspector.get_columns("jobs")}:
        return "0003"
    columns = {column["name"] for column in inspector.get_columns("head_chunks")}
    return "0002" if "arrived_us" in columns else "0001"


def upgrade(engine: Engine, lock_file: Path | None = None) -> None:
    """Upgrade the database `engine` works on to `head()` (module docstring). `lock_file`: the
    file whose `flock` serialises migrations of a SQLite database (PostgreSQL locks in itself)."""
    with engine.connect() as conn:
        found = revision(conn)
    if found == head():
        return
    _refuse_newer(found)
    postgres = engine.dialect.name == "postgresql"
    lock = _file_lock(lock_file) if lock_file is not None and not postgres else nullcontext()
    with lock, engine.connect() as conn, _foreign_keys_off(conn), conn.begin():
        if postgres:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_KEY})
        found = revision(conn)  # again: another process may have upgraded meanwhile
        _refuse_newer(found)
        if found is None:
            adopted = _unversioned(conn)
            if adopted is not None:
                command.stamp(_config(conn), adopted)
        command.upgrade(_config(conn), "head")
        if not postgres:
            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            assert not broken, f"a migration broke foreign keys: {broken[:5]}"


def _refuse_newer(found: str | None) -> None:
    if found is not None and not _known(found):
        raise SchemaTooNew(found, head())


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # drops the lock


@contextmanager
def _foreign_keys_off(conn: Connection) -> Iterator[None]:
    """SQLite: foreign keys off while revisions run (a table rebuilt by batch mode would
    otherwise cascade its DROP to the tables that reference it); set outside any transaction,
    as SQLite requires. Other databases: nothing."""
    if conn.dialect.name != "sqlite":
        yield
        return
    raw: Any = conn.connection.driver_connection
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        raw.execute("PRAGMA foreign_keys=ON")
