"""Retention drops whole sealed segments by age and advances the start offset; line numbers stay
absolute and every read path serves exactly the retained bytes."""

from __future__ import annotations

import itertools
import random
import re
import threading
from collections.abc import Callable

import pytest
from reference import reference_lines
from support.engine import backends_of, jobs_of, new_job

from jobtail.core import keys
from jobtail.core.errors import LogCleared, OffsetConflict
from jobtail.core.retention import DAY_SECONDS
from jobtail.core.search import compile_pattern
from jobtail.core.store import LogStore
from jobtail.core.types import IndexPolicy, TaskRef

_names = (f"ret-{i}" for i in itertools.count())
DAY = DAY_SECONDS


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def _open(store_factory: Callable[..., LogStore], clock: Clock, **options: object) -> LogStore:
    opts = {"seal_bytes": 10**9, "segment_bytes": 10**9, "preview_bytes": 300,
            "index_policy": IndexPolicy(every_bytes=37, every_seconds=1e9), **options}
    return store_factory(clock=clock, **opts)


def _new_ref(store: LogStore) -> TaskRef:
    job = new_job(store, "ret", next(_names))
    return TaskRef("ret", job.id, "worker-0")


def _text(rng: random.Random, size: int) -> bytes:
    words = [b"epoch", b"loss=0.1", b"\xe6\x90\x8d", b"ERROR", b"ok", b"\r"]
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rng.choice(words) for _ in range(rng.randint(0, 8)))
        out += b"\n" if rng.random() < 0.85 else b""
    return bytes(out[:size])


def _fill_days(store: LogStore, ref: TaskRef, clock: Clock, days: int, rng: random.Random) -> bytes:
    """One day per segment: a few appends (lines may span appends and days), then a seal."""
    log = b""
    for _ in range(days):
        for _ in range(rng.randint(1, 4)):
            chunk = _text(rng, rng.randint(1, 90))
            store.append(ref, chunk)
            log += chunk
        store.seal(ref)
        clock.advance(DAY)
    return log


def _retained(log: bytes, start: int) -> list[tuple[int, bytes]]:
    """Reference: (absolute number, retained text) of every line holding a byte at or after `start`."""
    out, pos = [], 0
    for number, text in enumerate(reference_lines(log), 1):
        end = pos + len(text) + 1
        if end > start:
            out.append((number, text[max(0, start - pos):]))
        pos = end
    return out


def _preview_reference(log: bytes, start: int, cap: int) -> bytes:
    begin = max(start, len(log) - cap)
    window = log[begin:]
    if begin > start:
        newline = window.find(b"\n")
        if newline >= 0:
            return window[newline + 1:]
        skip = 0
        while skip < len(window) and 0x80 <= window[skip] <= 0xBF:
            skip += 1
        return window[skip:]
    return window


def _check_reads(store: LogStore, ref: TaskRef, log: bytes) -> None:
    """Every read path against the reference computed from the full log."""
    state = store.state(ref)
    start = state.start_offset
    assert state.end_offset == len(log)
    expected = _retained(log, start)
    assert expected, "nothing retained"
    # read/download: [start_offset, end), whatever was asked for
    assert b"".join(store.read(store.state(ref), 0, len(log))) == log[start:]
    # preview
    preview = store.preview(store.state(ref))
    want = _preview_reference(log, start, store.preview_bytes)
    assert preview.content == want.decode("utf-8", "replace")
    assert (preview.current_size, preview.full_size) == (len(want), len(log))
    # lines: all retained lines ascending, then descending, then from every base
    asc = store.lines(store.state(ref), base_line=None, count=500, descending=False)
    assert [(x.number, x.text) for x in asc] == expected
    desc = store.lines(store.state(ref), base_line=None, count=500, descending=True)
    assert [(x.number, x.text) for x in desc] == expected[::-1]
    first, last = expected[0][0], expected[-1][0]
    for base in {0, 1, first - 1, first, first + 1, (first + last) // 2, last, last + 1}:
        if base < 0:
            continue
        page = store.lines(store.state(ref), base_line=base, count=3, descending=False)
        assert [(x.number, x.text) for x in page] == [e for e in expected if e[0] > base][:3], base
        page = store.lines(store.state(ref), base_line=base, count=3, descending=True)
        assert [(x.number, x.text) for x in page] == [e for e in expected if e[0] < base][::-1][:3], base
    # a since before everything starts at the first retained line
    since = store.lines(store.state(ref), base_line=None, count=2, descending=False, since=0.0)
    assert [(x.number, x.text) for x in since] == expected[:2]
    # search, forwards and backwards, with context
    pattern = compile_pattern("ERROR", False, False)
    hits = [e for e in expected if b"ERROR" in e[1]]
    forward = store.search(store.state(ref), pattern, limit=1000)
    assert [(m.line.number, m.line.text) for m in forward.matches] == hits
    backward = store.search(store.state(ref), pattern, before_line=10**9, limit=1000)
    assert [(m.line.number, m.line.text) for m in backward.matches] == hits[::-1]
    with_context = store.search(store.state(ref), compile_pattern(".", True, False), limit=1, context=3)
    if with_context.matches:
        match = with_context.matches[0]
        assert all(x.number >= first for x in match.before)
    # arrival times of retained offsets are known
    assert len(store.arrival_times(state, [start])) == 1


def _segment_blobs(store: LogStore) -> set[str]:
    return {b.key for b in backends_of(store).blobs.list(keys.JOBS_PREFIX)}


@pytest.mark.parametrize("seed", range(4))
def test_retention_drops_exactly_the_old_segments(store_factory: Callable[..., LogStore], seed: int) -> None:
    rng = random.Random(seed)
    clock = Clock()
    store = _open(store_factory, clock)
    ref = _new_ref(store)
    log = _fill_days(store, ref, clock, 10, rng)
    head = _text(rng, 50)
    store.append(ref, head)  # an unsealed head, never touched
    log += head
    before = backends_of(store).logs.segments(store.state(ref).log_id)
    assert len(before) == 10
    _check_reads(store, ref, log)

    keep_days = rng.randint(2, 8)
    cutoff = clock() - keep_days * DAY
    old = [s for s in before if s.created_at < cutoff]
    assert 0 < len(old) < 10

    dry = store.apply_retention(keep_days * DAY, dry_run=True)
    assert [(e.segments, e.start_offset) for e in dry] == [(len(old), old[-1].end_offset)]
    assert store.state(ref).start_offset == 0 and len(backends_of(store).logs.segments(store.state(ref).log_id)) == 10

    done = store.apply_retention(keep_days * DAY)
    assert [(e.job_id, e.task_id, e.segments, e.bytes, e.start_offset) for e in done] == [
        (ref.job_id, ref.task_id, len(old), old[-1].end_offset, old[-1].end_offset)]
    state = store.state(ref)
    assert state.start_offset == old[-1].end_offset
    assert state.end_offset == len(log) and state.sealed_offset == len(log) - len(head)
    assert backends_of(store).logs.segments(state.log_id) == before[len(old):]
    assert _segment_blobs(store) == {s.blob_key for s in before[len(old):]}
    _check_reads(store, ref, log)

    # idempotent
    assert store.apply_retention(keep_days * DAY) == []
    assert store.state(ref) == state
    _check_reads(store, ref, log)

    # appends go on at the end; dropped offsets cannot be rewritten
    store.append(ref, b"after ERROR\n")
    log += b"after ERROR\n"
    with pytest.raises(OffsetConflict):
        store.append(ref, b"x", offset=0)
    _check_reads(store, ref, log)

    # a day later one more segment is old enough; line numbers stay what they were
    clock.advance(DAY)
    assert [e.segments for e in store.apply_retention(keep_days * DAY)] == [1]
    _check_reads(store, ref, log)


def test_retention_keeps_forever_when_zero_and_young_segments(store_factory: Callable[..., LogStore]) -> None:
    clock = Clock()
    store = _open(store_factory, clock)
    ref = _new_ref(store)
    log = _fill_days(store, ref, clock, 3, random.Random(7))
    assert store.apply_retention(0) == []
    assert store.apply_retention(30 * DAY) == []
    assert store.state(ref).start_offset == 0
    _check_reads(store, ref, log)


def test_fully_cleared_log_answers_log_cleared(store_factory: Callable[..., LogStore]) -> None:
    clock = Clock()
    store = _open(store_factory, clock)
    ref = _new_ref(store)
    other = _new_ref(store)
    log = _fill_days(store, ref, clock, 3, random.Random(3))
    store.append(other, b"young\n")
    store.seal(other)
    clock.advance(40 * DAY)
    store.append(other, b"newer\n")
    done = store.apply_retention(30 * DAY)
    assert {(e.task_id, e.job_id) for e in done} == {("worker-0", ref.job_id), ("worker-0", other.job_id)}
    state = store.state(ref)
    assert state.start_offset == state.end_offset == len(log)
    assert backends_of(store).logs.segments(state.log_id) == []
    for call in (
        lambda: store.preview(store.state(ref)),
        lambda: store.lines(store.state(ref), base_line=None, count=5, descending=True),
        lambda: store.lines(store.state(ref), base_line=3, count=5, descending=False),
        lambda: store.search(store.state(ref), compile_pattern("a", False, False)),
    ):
        with pytest.raises(LogCleared):
            call()
    assert b"".join(store.read(store.state(ref), 0, 10**9)) == b""
    # the other log kept its head; only its old segment went
    assert b"".join(store.read(store.state(other), 0, 100)) == b"newer\n"
    page = store.lines(store.state(other), base_line=None, count=5, descending=False)
    assert [(x.number, x.text) for x in page] == [(2, b"newer")]
    assert store.preview(store.state(other)).content == "newer\n"
    # a cleared log takes new bytes at its end, numbered after the dropped lines
    store.append(ref, b"again\n")
    page = store.lines(store.state(ref), base_line=None, count=5, descending=True)
    assert [(x.number, x.text) for x in page] == _retained(log + b"again\n", len(log))
    assert page[0].number == log.count(b"\n") + 1
    assert _segment_blobs(store) == set()


def test_retention_is_safe_in_a_second_store_on_the_same_database(store_factory: Callable[..., LogStore]) -> None:
    clock = Clock()
    store = _open(store_factory, clock)
    replica = _open(store_factory, clock)
    ref = _new_ref(store)
    log = _fill_days(store, ref, clock, 6, random.Random(11))
    barrier = threading.Barrier(2)
    results: list[int] = []

    def run(s: LogStore) -> None:
        barrier.wait()
        results.append(sum(e.segments for e in s.apply_retention(3 * DAY)))

    threads = [threading.Thread(target=run, args=(s,)) for s in (store, replica)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 3]  # one store drops them; the other finds nothing left to do
    state = store.state(ref)
    assert state.start_offset == backends_of(store).logs.segments(state.log_id)[0].base_offset
    assert len(backends_of(store).logs.segments(state.log_id)) == 3
    _check_reads(store, ref, log)


def test_concurrent_appends_and_seals_during_retention(store_factory: Callable[..., LogStore]) -> None:
    clock = Clock()
    store = _open(store_factory, clock, seal_bytes=64, segment_bytes=128)
    ref = _new_ref(store)
    rng = random.Random(5)
    pieces = [_text(rng, rng.randint(1, 60)) for _ in range(300)]
    stop = threading.Event()
    errors: list[BaseException] = []
    dropped: list[int] = []

    def writer() -> None:
        try:
            for i, piece in enumerate(pieces):
                store.append(ref, piece)  # a full head is sealed in the background
                if i % 7 == 0:
                    store.seal(ref)
                clock.advance(600)
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    def retainer() -> None:
        try:
            while not stop.is_set():
                dropped.extend(e.segments for e in store.apply_retention(3 * 3600))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=retainer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    log = b"".join(pieces)
    store.seal(ref)
    clock.advance(1)
    dropped.extend(e.segments for e in store.apply_retention(3 * 3600))
    assert sum(dropped) > 0
    state = store.state(ref)
    segments = backends_of(store).logs.segments(state.log_id)
    assert segments and segments[0].base_offset == state.start_offset
    assert all(a.end_offset == b.base_offset for a, b in itertools.pairwise(segments))
    assert all(s.created_at >= clock() - 3 * 3600 for s in segments[1:])
    assert _segment_blobs(store) == {s.blob_key for s in segments}
    assert state.line_count == log.count(b"\n")
    _check_reads(store, ref, log)


def test_delete_job_after_retention_removes_the_rest(store_factory: Callable[..., LogStore]) -> None:
    clock = Clock()
    store = _open(store_factory, clock)
    ref = _new_ref(store)
    _fill_days(store, ref, clock, 4, random.Random(1))
    store.apply_retention(2 * DAY)
    jobs_of(store).delete(ref.project_id, ref.job_id)
    assert not [k for k in _segment_blobs(store) if re.search(ref.job_id, k)]
