"""Appends, seals and previews running at once: every preview is a snapshot of some prefix."""

from __future__ import annotations

import multiprocessing
import random
import threading
from collections.abc import Callable

from reference import reference_preview
from support.engine import backends_of, new_job, open_engine

from jobtail.core.store import LogStore
from jobtail.core.types import TaskRef

CAP = 1000
OPTIONS = {"preview_bytes": CAP, "seal_bytes": 2048, "segment_bytes": 4096}


def _log_bytes(seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    words = ["epoch", "loss=0.123", "損失", "\x1b[32mok\x1b[0m", "\r 45%|####  |", "😀", "\xff"]
    out = bytearray()
    while len(out) < size:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(0, 30)))
        out += line.encode("utf-8", "surrogateescape") + (b"\n" if rng.random() < 0.9 else b"")
    return bytes(out[:size])


def _chunks(data: bytes, seed: int) -> list[tuple[int, bytes]]:
    rng = random.Random(seed)
    pos, out = 0, []
    while pos < len(data):
        n = rng.randint(1, 700)
        out.append((pos, data[pos : pos + n]))
        pos += n
    return out


def _append_all(store: LogStore, ref: TaskRef, data: bytes) -> None:
    for offset, chunk in _chunks(data, seed=7):
        store.append(ref, chunk, offset=offset)


def _check_previews(store: LogStore, ref: TaskRef, data: bytes, done: threading.Event | Callable[[], bool]) -> int:
    finished = done.is_set if isinstance(done, threading.Event) else done
    last_full, checked = 0, 0
    while True:
        stop = finished()
        state = store.state(ref)
        if state.end_offset:
            p = store.preview(state)
            assert p.full_size >= last_full, "a reader saw the log shrink"
            assert (p.content, p.current_size, p.full_size) == reference_preview(data[: p.full_size], CAP)
            last_full, checked = p.full_size, checked + 1
        if stop:
            return checked


def test_threads_append_seal_preview(store_factory: Callable[..., LogStore]) -> None:
    store = store_factory(**OPTIONS)
    job = new_job(store, "conc", "threads")
    ref = TaskRef("conc", job.id, "worker-0")
    data = _log_bytes(seed=1, size=300_000)
    done = threading.Event()
    errors: list[BaseException] = []
    checked: list[int] = []

    def run(work: Callable[[], object]) -> None:
        try:
            work()
        except BaseException as exc:  # surface failures from worker threads
            errors.append(exc)
            done.set()

    def sealer() -> None:
        while not done.is_set():
            store.seal(ref)

    def writer() -> None:
        _append_all(store, ref, data)
        done.set()

    threads = [threading.Thread(target=run, args=(w,)) for w in (writer, sealer)]
    threads += [threading.Thread(target=run, args=(lambda: checked.append(_check_previews(store, ref, data, done)),))
                for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not errors, errors
    assert sum(checked) > 2  # previews really ran while the log moved
    store.seal(ref)
    assert b"".join(store.read(store.state(ref), 0, len(data))) == data
    assert len(backends_of(store).logs.segments(store.state(ref).log_id)) > 5


def _writer_process(meta_url: str, blob_url: str, job_id: str, seed: int) -> None:
    store = open_engine(meta_url, blob_url, **OPTIONS).store
    try:
        _append_all(store, TaskRef("conc", job_id, "worker-0"), _log_bytes(seed=seed, size=150_000))
    finally:
        store.close()


def test_processes_append_seal_preview(meta_url: str, tmp_path: object) -> None:
    blob_url = (tmp_path / "blobs").as_uri()  # type: ignore[operator]
    store = open_engine(meta_url, blob_url, **OPTIONS).store
    try:
        job = new_job(store, "conc", "processes")
        ref = TaskRef("conc", job.id, "worker-0")
        data = _log_bytes(seed=2, size=150_000)
        ctx = multiprocessing.get_context("spawn")
        # Two writer processes send the same bytes at the same offsets, as a retrying shipper
        # might: offsets make the second copy a no-op, never a duplicate.
        writers = [ctx.Process(target=_writer_process, args=(meta_url, blob_url, job.id, 2)) for _ in range(2)]
        for w in writers:
            w.start()
        sealing = threading.Event()

        def sealer() -> None:
            while not sealing.is_set():
                store.seal(ref)

        seal_thread = threading.Thread(target=sealer)
        seal_thread.start()
        try:
            checked = _check_previews(store, ref, data, lambda: not any(w.is_alive() for w in writers))
        finally:
            sealing.set()
            seal_thread.join(timeout=60)
            for w in writers:
                w.join(timeout=60)
        assert [w.exitcode for w in writers] == [0, 0]
        assert checked > 2
        assert store.state(ref).end_offset == len(data)
        assert b"".join(store.read(store.state(ref), 0, len(data))) == data
    finally:
        store.close()
