"""LogStore housekeeping: what an interrupted seal leaves behind is swept (the log itself is
covered by the read, line and retention suites)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.engine import Engine, new_job
from support.sealing import kill_a_seal, temporaries

from jobtail.core.errors import TaskNotFound
from jobtail.core.jobs import JobService
from jobtail.core.store import Backends, LogStore
from jobtail.core.types import JobSpec, Preview, TaskRef

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


def test_concurrent_previews_of_one_log_share_one_encoding(store_factory: Callable[..., LogStore]) -> None:
    encoded: list[int] = []
    release = threading.Event()

    def slow_encoder(preview: Preview) -> bytes:
        encoded.append(preview.full_size)
        release.wait(timeout=30)  # every reader arrives while this one encodes
        return preview.content.encode()

    store = store_factory(preview_encoder=slow_encoder, preview_bytes=64)
    ref = _log(store, "flight", b"one\ntwo\nthree\n")
    with ThreadPoolExecutor(8) as pool:
        answers = [pool.submit(store.encoded_preview, ref) for _ in range(8)]
        deadline = time.monotonic() + 30
        while not encoded and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the other seven are waiting (or have not started: then they hit the cache)
        release.set()
        bodies = {future.result(timeout=60).body for future in answers}
    assert bodies == {b"one\ntwo\nthree\n"}
    assert encoded == [14]


def test_a_preview_waited_for_is_never_older_than_the_state_its_reader_saw(store_factory: Callable[..., LogStore]) -> None:
    """A reader that arrives after an append while an older preview is being encoded does not take
    that older preview: it encodes (or waits for) one that covers the append."""
    entered, release = threading.Event(), threading.Event()

    def encoder(preview: Preview) -> bytes:
        if not entered.is_set():
            entered.set()
            release.wait(timeout=30)
        return str(preview.full_size).encode()

    store = store_factory(preview_encoder=encoder, preview_bytes=64)
    ref = _log(store, "fresh", b"a\n")
    with ThreadPoolExecutor(2) as pool:
        old = pool.submit(store.encoded_preview, ref)
        assert entered.wait(timeout=30)
        store.append(ref, b"b\n")
        new = pool.submit(store.encoded_preview, ref)
        time.sleep(0.2)
        release.set()
        assert old.result(timeout=60).body == b"2"
        assert new.result(timeout=60).body == b"4"
    assert store.encoded_preview(ref).body == b"4"  # and the newer one is what stays cached
    etag = store.encoded_preview(ref).etag
    assert store.encoded_preview(ref, {etag}).body is None
    assert store.answered_preview(ref, {"*"})[0] == store.encoded_preview(ref, {etag})


def test_an_answered_preview_hands_its_state_to_the_encoding_and_leaves_missing_logs_to_it(
    store_factory: Callable[..., LogStore],
) -> None:
    store = store_factory(preview_encoder=lambda preview: str(preview.full_size).encode(), preview_bytes=64)
    ref = _log(store, "handed", b"a\n")
    answer, state = store.answered_preview(ref)
    assert answer is None and state is not None and state.end_offset == 2  # nothing encoded yet
    store.append(ref, b"b\n")
    assert store.encoded_preview(ref, (), state).body == b"2"  # as of the state the caller read
    assert store.answered_preview(ref)[0] is None  # the log moved on: that preview is not current
    missing = TaskRef(ref.project_id, ref.job_id, "worker-9")
    assert store.answered_preview(missing) == (None, None)
    with pytest.raises(TaskNotFound):
        store.encoded_preview(missing)
