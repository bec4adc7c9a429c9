"""The SQLite backend's own parts: the plain-sqlite3 reads beside SQLAlchemy."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from jobtail.meta import open_database


def _open_on(path: Path) -> int:
    """How many descriptors of this process are open on the database file."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == str(path)
        except OSError:
            pass
    return count


def test_reads_from_ever_new_threads_keep_a_bounded_set_of_connections(tmp_path: Path) -> None:
    """A thread pool replaces idle threads (anyio's after 10 s): reads must not leave a
    connection behind per thread that ever ran one."""
    path = tmp_path / "meta.db"
    database = open_database(f"sqlite:///{path}")
    try:
        assert database.local_fetch is not None
        fetch = database.local_fetch
        assert fetch("SELECT 1", ()) == (1,)
        before = _open_on(path)
        for _ in range(40):  # one read on each of 40 short-lived threads, one after another
            thread = threading.Thread(target=fetch, args=("SELECT count(*) FROM jobs", ()))
            thread.start()
            thread.join()
        assert _open_on(path) == before
    finally:
        database.close()
    with pytest.raises(RuntimeError):
        fetch("SELECT 1", ())


def test_job_writes_take_turns_with_log_writes(tmp_path: Path) -> None:
    """A job written while appends hold SQLite's write lock waits its turn on a lock, woken the
    moment the other transaction ends, instead of sleeping in SQLite's busy handler."""
    from support.meta_records import make_job

    database = open_database(f"sqlite:///{tmp_path / 'meta.db'}")
    try:
        turns = database.logs.turns
        assert turns is not None
        created = threading.Event()

        def create() -> None:
            database.jobs.create_job(make_job())
            created.set()

        with turns:  # as an append's transaction holds it
            writer = threading.Thread(target=create)
            writer.start()
            assert not created.wait(0.2)  # it waits for its turn
        assert created.wait(10)
        writer.join()
    finally:
        database.close()
