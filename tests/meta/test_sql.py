"""Storage errors of the SQL backends, for real: a database on a full disk raises StorageFull (and
works again once space is freed); one that refuses writes raises StorageNotWritable.

SQLite's file and a PostgreSQL tablespace live on a small tmpfs that the test fills up.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from support.engine import Engine, backends_of, new_job, open_engine
from support.filesystems import fill, tmpfs
from support.postgres import PostgresServer

from jobtail.core.errors import StorageFull, StorageNotWritable
from jobtail.core.types import TaskRef

PROJECT = "proj-full"


def _admin(server: PostgresServer) -> psycopg.Connection:
    return psycopg.connect(host="127.0.0.1", port=server.port, user="postgres", dbname="postgres", autocommit=True)


@contextmanager
def database_on(backend: str, disk: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of an empty database whose data lives on `disk`."""
    if backend == "sqlite":
        yield f"sqlite:///{disk / 'meta.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    location = disk / "tablespace"
    location.mkdir()
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(location, owner.pw_uid, owner.pw_gid)
    name = f"full_{uuid.uuid4().hex[:12]}"
    with _admin(server) as conn:
        conn.execute(sql.SQL("CREATE TABLESPACE {} LOCATION {}").format(sql.Identifier(name), sql.Literal(str(location))))
        conn.execute(sql.SQL("CREATE DATABASE {} TABLESPACE {}").format(sql.Identifier(name), sql.Identifier(name)))
    try:
        yield f"postgresql://postgres@127.0.0.1:{server.port}/{quote(name)}"
    finally:
        with _admin(server) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP TABLESPACE {}").format(sql.Identifier(name)))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_database_on_a_full_disk_raises_storage_full_and_recovers(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # Under a directory the postgres user can enter (pytest's tmp_path is private to root).
    where = Path(tempfile.mkdtemp(prefix="jobtail-full-", dir="/tmp")) if backend == "postgresql" else tmp_path
    where.chmod(0o755)
    try:
        with tmpfs(where / "disk", "16m") as disk, database_on(backend, disk, request) as url:
            store = open_engine(url, "memory://", seal_bytes=1 << 40).store
            try:
                ref = TaskRef(PROJECT, new_job(store, PROJECT, "full").id, "worker-0")
                store.append(ref, b"before\n")
                ballast = fill(disk)
                stored = b"before\n"
                with pytest.raises(StorageFull) as full:
                    for _ in range(1000):  # 64 MiB: far more than the disk holds
                        data = os.urandom(32 * 1024).hex().encode()
                        store.append(ref, data, len(stored))
                        stored += data
                where_full = "head files" if backend == "sqlite" else "database"  # SQLite: the file head
                assert full.value.where == where_full
                assert f"no space left on the log store ({where_full})" in full.value.message
                with pytest.raises(StorageFull):
                    new_job(store, PROJECT, "while-full", node_count=64)
                assert store.state(ref).end_offset == len(stored), "reads work; nothing acknowledged is lost"
                ballast.unlink()
                backends_of(store).logs.checkpoint()
                store.append(ref, b"after\n", len(stored))
                assert b"".join(store.read(store.state(ref), 0, 1 << 40)) == stored + b"after\n"
            finally:
                store.close()
    finally:
        if where != tmp_path:
            shutil.rmtree(where, ignore_errors=True)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_database_that_refuses_writes_raises_storage_not_writable(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        path = tmp_path / "meta.db"
        writable = f"sqlite:///{path}"
        read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        writable = server.create_database(f"ro_{uuid.uuid4().hex[:12]}")
        read_only = writable + "?options=" + quote("-c default_transaction_read_only=on")
    engine: Engine = open_engine(writable, "memory://")
    store = engine.store
    ref = TaskRef(PROJECT, new_job(store, PROJECT, "read-only").id, "worker-0")
    store.append(ref, b"stored\n")
    engine.database.check_writable()
    store.close()
    engine = open_engine(read_only, "memory://")
    store = engine.store
    try:
        with pytest.raises(StorageNotWritable) as refused:
            engine.database.check_writable()
        assert refused.value.what == "the database"
        with pytest.raises(StorageNotWritable):
            store.append(ref, b"refused\n")
        assert b"".join(store.read(store.state(ref), 0, 100)) == b"stored\n"
    finally:
        store.close()
