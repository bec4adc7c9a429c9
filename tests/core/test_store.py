"""LogStore housekeeping: what an interrupted seal leaves behind is swept (the log itself is
covered by the read, line and retention suites)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from support.engine import Engine, new_job
from support.sealing import kill_a_seal, temporaries

from jobtail.core.jobs import JobService
from jobtail.core.store import Backends, LogStore
from jobtail.core.types import JobSpec, TaskRef

PROJECT = "proj-sweep"

def _log(store: LogStore, name: str, data: bytes) -> TaskRef:
    ref = TaskRef(PROJECT, new_job(store, PROJECT, name).id, "worker-0")
    store.append(ref, data)
    return ref


def test_the_next_seal_of_the_log_removes_what_an_interrupted_seal_left(
    engine_factory: Callable[..., Engine], meta_url: str, tmp_path: Path
) -> None:
    store = engine_factory().store
    blob_root = tmp_path / "blobs"
    first = os.urandom(300_000)
    ref = _log(store, "interrupted", first)
    leftover = kill_a_seal(meta_url, blob_root, ref)
    assert leftover.read_bytes()[: len(first)] == first, "the segment was written whole (its trailer follows)"
    assert store.sweep_orphans(grace_seconds=3600) == [], "too young for the periodic sweep"
    store.append(ref, b"more\n")
    assert store.seal(ref) == 1
    assert temporaries(blob_root) == []
    assert b"".join(store.read(store.state(ref), 0, 1 << 40)) == first + b"more\n"
    assert store.state(ref).head_bytes == 0


def test_the_sweep_removes_leftovers_older_than_the_grace_period(
    engine_factory: Callable[..., Engine], meta_url: str, tmp_path: Path
) -> None:
    store = engine_factory().store
    blob_root = tmp_path / "blobs"
    ref = _log(store, "never-sealed-again", b"x" * 100_000)
    leftover = kill_a_seal(meta_url, blob_root, ref)
    assert store.sweep_orphans(grace_seconds=600) == []
    ten_minutes_ago = time.time() - 601
    os.utime(leftover, (ten_minutes_ago, ten_minutes_ago))
    assert store.sweep_orphans(grace_seconds=600) == [leftover.relative_to(blob_root).as_posix()]
    assert temporaries(blob_root) == []
    assert b"".join(store.read(store.state(ref), 0, 1 << 40)) == b"x" * 100_000, "the head still holds the bytes"


def test_a_sweep_without_grace_never_takes_a_segment_this_process_is_sealing(meta_url: str, tmp_path: Path) -> None:
    """With orphan_grace_seconds 0 the periodic sweep runs every round; the blob of a seal in
    progress (written, not recorded yet) is not an orphan, in whichever order the two interleave."""
    from jobtail.blobs.local import LocalBlobStore
    from jobtail.meta.database import open_database

    store: LogStore

    class SweepMidSeal(LocalBlobStore):
        def put(self, key: str, chunks: Iterable[bytes]) -> int:
            size = super().put(key, chunks)
            assert store.sweep_orphans(grace_seconds=-1) == []  # after the blob, before its record
            return size

    database = open_database(meta_url)
    store = LogStore(Backends(database.jobs, database.logs, SweepMidSeal(tmp_path / "blobs"), database.close))
    try:
        ref = TaskRef(PROJECT, JobService(database.jobs, store).create(PROJECT, JobSpec("mid-seal"), "none").id,
                      "worker-0")
        store.append(ref, b"kept\n" * 10_000)
        assert store.seal(ref) == 1
        assert b"".join(store.read(store.state(ref), 0, 1 << 40)) == b"kept\n" * 10_000
        assert store.sweep_orphans(grace_seconds=-1) == []
    finally:
        store.close()
