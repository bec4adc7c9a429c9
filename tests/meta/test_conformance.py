"""Conformance suite for `jobtail.meta.base.MetaStore`: every backend, same contract.

Runs once per metadata backend through the `meta_url` fixture (a fresh SQLite file, a fresh
database on the session's PostgreSQL server). Tests only use the protocol's methods and check
what its docstrings promise; nothing here looks at tables or SQL.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from jobtail.core.errors import DuplicateJobName
from jobtail.core.types import (
    HeadChunk,
    IndexEntry,
    IndexPolicy,
    JobRecord,
    LogState,
    ReadPlan,
    Segment,
)
from jobtail.meta.base import MetaStore
from jobtail.meta.registry import open_meta

EVERY_APPEND = IndexPolicy(every_bytes=10**12, every_seconds=0.0)
NEVER_AFTER_FIRST = IndexPolicy(every_bytes=10**12, every_seconds=1e12)


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def meta(meta_url: str) -> Iterator[MetaStore]:
    store = open_meta(meta_url)
    try:
        yield store
    finally:
        store.close()


def make_job(
    project: str = "proj-a",
    name: str | None = None,
    tasks: tuple[str, ...] = ("worker-0",),
    job_id: str | None = None,
    document: dict | None = None,
) -> JobRecord:
    job_id = job_id or uuid.uuid4().hex
    return JobRecord(
        id=job_id,
        project_id=project,
        name=name or f"job-{job_id[:8]}",
        tasks=tasks,
        created_at=1_700_000_000_123,
        document=document if document is not None else {"metadata": {"name": name}},
    )


def new_log(meta: MetaStore, project: str = "proj-a", task: str = "worker-0") -> tuple[JobRecord, int]:
    """Create a one-task job and return it with its log id."""
    job = make_job(project=project, tasks=(task,))
    meta.create_job(job)
    state = meta.log_state(project, job.id, task)
    assert state is not None
    return job, state.log_id


def log_id_of(meta: MetaStore, job: JobRecord, task: str) -> int:
    state = meta.log_state(job.project_id, job.id, task)
    assert state is not None, f"no log for {job.id}/{task}"
    return state.log_id


def append_all(
    meta: MetaStore, log_id: int, chunks: list[bytes], now: float = 1000.0, policy: IndexPolicy = EVERY_APPEND
) -> int:
    """Append `chunks` one by one at the log's end (asserting each is stored); return the end."""
    state = meta.log_state_by_id(log_id)
    assert state is not None
    end = state.end_offset
    for i, chunk in enumerate(chunks):
        outcome = meta.append(log_id, end, chunk, now + i, policy)
        assert outcome.stored, f"append of chunk {i} at {end} refused: {outcome}"
        assert outcome.end_offset == end + len(chunk)
        end = outcome.end_offset
    return end


def seal(meta: MetaStore, log_id: int, max_bytes: int, key: str, segment_data: dict[str, bytes]) -> Segment:
    """Seal like the engine does: head chunks from the sealed offset into one recorded segment."""
    state = meta.log_state_by_id(log_id)
    assert state is not None
    chunks = meta.head_chunks(log_id, state.sealed_offset, max_bytes)
    assert chunks, "nothing to seal"
    data = b"".join(c.data for c in chunks)
    segment = Segment(chunks[0].base_offset, len(data), key, created_at=2000.5)
    segment_data[key] = data
    assert meta.record_segment(log_id, segment)
    return segment


def plan_bytes(plan: ReadPlan, start: int, end: int, segment_data: dict[str, bytes]) -> bytes:
    """The bytes `[start, end)` assembled from `plan`; fails on a gap or on pieces out of order."""
    for pieces in (plan.segments, plan.head):
        bases = [p.base_offset for p in pieces]
        assert bases == sorted(bases), f"pieces not in offset order: {bases}"
    pieces: list[Segment | HeadChunk] = sorted([*plan.segments, *plan.head], key=lambda p: p.base_offset)
    out = bytearray()
    pos = start
    for piece in pieces:
        if piece.end_offset <= pos or pos >= end:
            continue
        assert piece.base_offset <= pos, f"gap: bytes [{pos}, {piece.base_offset}) missing from {plan}"
        if isinstance(piece, Segment):
            data = segment_data[piece.blob_key]
            assert len(data) == piece.length
        else:
            data = piece.data
        upto = min(piece.end_offset, end)
        out += data[pos - piece.base_offset : upto - piece.base_offset]
        pos = upto
    assert pos >= end or start >= end, f"bytes [{pos}, {end}) missing from {plan}"
    return bytes(out)


def overlaps(piece: Segment | HeadChunk, start: int, end: int) -> bool:
    return piece.base_offset < end and piece.end_offset > start


# -- jobs ---------------------------------------------------------------------------------------


def test_create_job_stores_job_and_empty_task_logs(meta: MetaStore) -> None:
    document = {"metadata": {"name": "train", "desc": "ünïcødé ✓"}, "spec": {"nodes": 3, "x": [1, None, 2.5]}}
    job = make_job(name="train", tasks=("worker-0", "worker-1", "worker-2"), document=document)
    meta.create_job(job)

    assert meta.get_job("proj-a", job.id) == job
    ids = set()
    for task in job.tasks:
        state = meta.log_state("proj-a", job.id, task)
        assert state is not None
        assert (state.start_offset, state.sealed_offset, state.end_offset, state.line_count) == (0, 0, 0, 0)
        assert state.last_append_at is None
        assert state.head_bytes == 0
        assert meta.log_state_by_id(state.log_id) == state
        assert meta.log_owner(state.log_id) == (job.id, task)
        assert meta.segments(state.log_id) == []
        assert meta.index_entries(state.log_id, 0, 10**12) == []
        assert meta.head_chunks(state.log_id, 0, 10**6) == []
        plan = meta.read_plan(state.log_id, 0, 10**6)
        assert plan.segments == () and plan.head == ()
        ids.add(state.log_id)
    assert len(ids) == 3, "every task needs its own log"
    assert meta.log_state("proj-a", job.id, "worker-3") is None


def test_duplicate_job_name_in_project_is_refused_atomically(meta: MetaStore) -> None:
    first = make_job(project="proj-a", name="train")
    meta.create_job(first)
    dup = make_job(project="proj-a", name="train", tasks=("worker-0", "worker-1"))
    with pytest.raises(DuplicateJobName):
        meta.create_job(dup)
    # nothing of the refused job was stored
    assert meta.get_job("proj-a", dup.id) is None
    assert meta.log_state("proj-a", dup.id, "worker-0") is None
    assert meta.log_state("proj-a", dup.id, "worker-1") is None
    # the original is untouched
    assert meta.get_job("proj-a", first.id) == first

    other = make_job(project="proj-b", name="train")
    meta.create_job(other)  # same name, another project: fine
    assert meta.get_job("proj-b", other.id) == other
    assert meta.log_state("proj-b", other.id, "worker-0") is not None


def test_concurrent_create_of_one_name_lets_exactly_one_win(meta: MetaStore) -> None:
    jobs = [make_job(project="proj-a", name="race") for _ in range(8)]
    barrier = threading.Barrier(len(jobs))

    def create(job: JobRecord) -> bool:
        barrier.wait()
        try:
            meta.create_job(job)
        except DuplicateJobName:
            return False
        return True

    with ThreadPoolExecutor(len(jobs)) as pool:
        won = list(pool.map(create, jobs))
    assert won.count(True) == 1
    for job, ok in zip(jobs, won):
        assert (meta.get_job("proj-a", job.id) is not None) == ok
        assert (meta.log_state("proj-a", job.id, "worker-0") is not None) == ok


def test_other_projects_job_is_invisible(meta: MetaStore) -> None:
    job, log_id = new_log(meta, project="proj-a")
    append_all(meta, log_id, [b"secret\n"])

    assert meta.get_job("proj-b", job.id) is None
    assert meta.log_state("proj-b", job.id, "worker-0") is None
    assert meta.delete_job("proj-b", job.id) == []
    # the delete from the wrong project did nothing
    assert meta.get_job("proj-a", job.id) == job
    state = meta.log_state("proj-a", job.id, "worker-0")
    assert state is not None and state.end_offset == 7


def test_unknown_ids(meta: MetaStore) -> None:
    _, log_id = new_log(meta)
    assert meta.get_job("proj-a", "no-such-job") is None
    assert meta.log_state("proj-a", "no-such-job", "worker-0") is None
    assert meta.delete_job("proj-a", "no-such-job") == []
    assert meta.log_state_by_id(log_id + 10_000) is None
    assert meta.log_owner(log_id + 10_000) is None


# -- appending ----------------------------------------------------------------------------------


def test_append_is_compare_and_append(meta: MetaStore) -> None:
    _, log_id = new_log(meta)
    first = meta.append(log_id, 0, b"hello\nworld\n", 1000.0, EVERY_APPEND)
    assert first.stored and first.end_offset == 12

    for stale in (0, 5, 11, 13, 100):
        outcome = meta.append(log_id, stale, b"XXXX\n", 1001.0 + stale, EVERY_APPEND)
        assert not outcome.stored, f"append at {stale} stored although the log ends at 12"
        assert outcome.end_offset == 12

    state = meta.log_state_by_id(log_id)
    assert state is not None
    assert (state.end_offset, state.sealed_offset, state.line_count, state.last_append_at) == (12, 0, 2, 1000.0)
    assert meta.head_chunks(log_id, 0, 10**6) == [HeadChunk(0, b"hello\nworld\n")]
    assert meta.index_entries(log_id, 0, 10**6) == [IndexEntry(0, 0, 1000.0)]

    second = meta.append(log_id, 12, b"more", 1002.0, EVERY_APPEND)
    assert second.stored and second.end_offset == 16
    state = meta.log_state_by_id(log_id)
    assert state is not None
    assert (state.end_offset, state.line_count, state.last_append_at) == (16, 2, 1002.0)
    assert plan_bytes(meta.read_plan(log_id, 0, 16), 0, 16, {}) == b"hello\nworld\nmore"


def test_append_counts_lines_and_touches_only_its_log(meta: MetaStore) -> None:
    job = make_job(tasks=("worker-0", "worker-1"))
    meta.create_job(job)
    a, b = log_id_of(meta, job, "worker-0"), log_id_of(meta, job, "worker-1")
    chunks = [b"one\ntwo\n", b"no newline", b"\n", b"\n\n\nx", b"\xff\xfe binary \x00\n"]
    end = append_all(meta, a, chunks, now=1234.5)
    state = meta.log_state_by_id(a)
    assert state is not None
    assert state.end_offset == end == sum(map(len, chunks))
    assert state.line_count == b"".join(chunks).count(b"\n") == 7
    assert state.last_append_at == 1234.5 + len(chunks) - 1
    assert plan_bytes(meta.read_plan(a, 0, end), 0, end, {}) == b"".join(chunks)

    other = meta.log_state_by_id(b)
    assert other is not None
    assert (other.end_offset, other.line_count, other.last_append_at) == (0, 0, None)
    assert meta.read_plan(b, 0, 100) == ReadPlan((), ())


def test_index_entries_follow_the_policy(meta: MetaStore) -> None:
    _, log_id = new_log(meta)
    policy = IndexPolicy(every_bytes=100, every_seconds=10.0)
    steps = [  # (now, data, expect an entry at this append's offset)
        (1000.0, b"a\n" * 10, True),  # first append: always (offset 0, line 0)
        (1001.0, b"b" * 50, False),  # 20 bytes, 1 s since the entry
        (1002.0, b"c\n" * 15, False),  # 70 bytes, 2 s
        (1003.0, b"d\n", True),  # 100 bytes since the entry: every_bytes reached
        (1012.5, b"e\n", False),  # 2 bytes, 9.5 s
        (1013.0, b"f\n", True),  # 10 s since the entry: every_seconds reached
        (1014.0, b"g", False),
    ]
    end, expected = 0, []
    log = b""
    for now, data, wanted in steps:
        if wanted:
            expected.append(IndexEntry(end, log.count(b"\n"), now))
        outcome = meta.append(log_id, end, data, now, policy)
        assert outcome.stored
        # a refused append adds no entry, even when the policy would want one
        assert not meta.append(log_id, end, b"zz\n", now + 500, policy).stored
        end, log = outcome.end_offset, log + data

    entries = meta.index_entries(log_id, 0, end + 1)
    assert entries == expected
    assert [e.offset for e in entries] == [0, 100, 104]
    assert [e.line for e in entries] == [0, 25, 27]
    for entry in entries:
        assert entry.line == log[: entry.offset].count(b"\n")


def test_index_first_append_always_gets_an_entry(meta: MetaStore) -> None:
    _, log_id = new_log(meta)
    end = append_all(meta, log_id, [b"x\n", b"y\n", b"z\n"], now=50.0, policy=NEVER_AFTER_FIRST)
    assert meta.index_entries(log_id, 0, end) == [IndexEntry(0, 0, 50.0)]


def test_index_floor_line_and_time(meta: MetaStore) -> None:
    job = make_job(tasks=("worker-0", "worker-1"))
    meta.create_job(job)
    log_id, other = log_id_of(meta, job, "worker-0"), log_id_of(meta, job, "worker-1")
    policy = IndexPolicy(every_bytes=100, every_seconds=10.0)
    # entries at (offset 0, line 0, t 1000), (100, 25, 1003), (104, 27, 1013)
    end = 0
    steps = [(1000.0, b"a\n" * 10 + b"b" * 50 + b"c\n" * 15), (1003.0, b"d\n"), (1012.5, b"e\n"), (1013.0, b"f\n")]
    for now, data in steps:
        end = meta.append(log_id, end, data, now, policy).end_offset
    first, second, third = IndexEntry(0, 0, 1000.0), IndexEntry(100, 25, 1003.0), IndexEntry(104, 27, 1013.0)
    assert meta.index_entries(log_id, 0, end) == [first, second, third]
    # another log's entries, in between in time and line, must never show up
    append_all(meta, other, [b"\n" * 30, b"\n" * 30], now=1001.0, policy=EVERY_APPEND)

    assert meta.index_floor_line(log_id, -1) is None
    assert meta.index_floor_line(log_id, 0) == first
    assert meta.index_floor_line(log_id, 24) == first
    assert meta.index_floor_line(log_id, 25) == second
    assert meta.index_floor_line(log_id, 26) == second
    assert meta.index_floor_line(log_id, 27) == third
    assert meta.index_floor_line(log_id, 10**9) == third

    assert meta.index_ceil_time(log_id, 0.0) == first
    assert meta.index_ceil_time(log_id, 1000.0) == first
    assert meta.index_ceil_time(log_id, 1000.001) == second
    assert meta.index_ceil_time(log_id, 1003.0) == second
    assert meta.index_ceil_time(log_id, 1012.0) == third
    assert meta.index_ceil_time(log_id, 1013.0) == third
    assert meta.index_ceil_time(log_id, 1013.001) is None

    assert meta.index_floor_offset(log_id, 0) == first
    assert meta.index_floor_offset(log_id, 99) == first
    assert meta.index_floor_offset(log_id, 100) == second
    assert meta.index_floor_offset(log_id, 10**9) == third

    assert meta.index_entries(log_id, 0, 100) == [first]
    assert meta.index_entries(log_id, 0, 101) == [first, second]
    assert meta.index_entries(log_id, 100, 104) == [second]
    assert meta.index_entries(log_id, 101, 104) == []
    assert meta.index_entries(log_id, 104, 105) == [third]
    assert meta.index_entries(log_id, 105, 10**9) == []
    assert meta.index_entries(log_id, 50, 50) == []


def test_index_floor_line_picks_the_last_entry_of_equal_lines(meta: MetaStore) -> None:
    _, log_id = new_log(meta)
    policy = IndexPolicy(every_bytes=100, every_seconds=1e9)
    end = append_all(meta, log_id, [b"x" * 100, b"y" * 100, b"z" * 99 + b"\n", b"w"], now=10.0, policy=policy)
    entries = meta.index_entries(log_id, 0, end)
    assert entries == [IndexEntry(0, 0, 10.0), IndexEntry(100, 0, 11.0), IndexEntry(200, 0, 12.0), IndexEntry(300, 1, 13.0)]
    assert meta.index_floor_line(log_id, 0) == IndexEntry(200, 0, 12.0)
    assert meta.index_floor_line(log_id, 1) == IndexEntry(300, 1, 13.0)


def test_index_has_entries_inside_large_appends(meta: MetaStore) -> None:
    _, log_id = new_log(meta)
    policy = IndexPolicy(every_bytes=100, every_seconds=1e9)
    data = b"ab\n" * 50 + b"x" * 150 + b"\n\n"  # 302 bytes: newlines before 100, 200, 300 = 33, 50, 50
    end = meta.append(log_id, 0, data, 7.0, policy).end_offset
    assert meta.index_entries(log_id, 0, end) == [
        IndexEntry(0, 0, 7.0), IndexEntry(100, 33, 7.0), IndexEntry(200, 50, 7.0), IndexEntry(300, 50, 7.0)]
    assert meta.index_floor_offset(log_id, 250) == IndexEntry(200, 50, 7.0)
    # the next append is spaced from the last inner entry, not from the append's start
    end = meta.append(log_id, end, b"y" * 98, 8.0, policy).end_offset
    assert meta.index_entries(log_id, 301, end) == []
    meta.append(log_id, end, b"z", 9.0, policy)
    assert meta.index_entries(log_id, 301, 10**6) == [IndexEntry(400, 52, 9.0)]


def test_empty_log_has_no_index(meta: MetaStore) -> None:
    _, log_id = new_log(meta)
    assert meta.index_floor_line(log_id, 10) is None
    assert meta.index_ceil_time(log_id, 0.0) is None
    assert meta.index_entries(log_id, 0, 10**9) == []


def test_concurrent_appends_store_every_byte_exactly_once(meta: MetaStore) -> None:
    _, log_id = new_log(meta)
    threads, per_thread = 8, 30
    barrier = threading.Barrier(threads)
    conflicts = [0] * threads

    def writer(t: int) -> None:
        barrier.wait()
        end = 0  # deliberately stale: the CAS tells us where the log really ends
        for i in range(per_thread):
            record = f"thread-{t}-record-{i:03d}\n".encode()
            while True:
                outcome = meta.append(log_id, end, record, time.time(), EVERY_APPEND)
                end = outcome.end_offset
                if outcome.stored:
                    break
                conflicts[t] += 1

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(writer, range(threads)))

    expected = {f"thread-{t}-record-{i:03d}\n".encode() for t in range(threads) for i in range(per_thread)}
    total = sum(map(len, expected))
    state = meta.log_state_by_id(log_id)
    assert state is not None
    assert state.end_offset == total
    assert state.line_count == len(expected)
    data = plan_bytes(meta.read_plan(log_id, 0, total), 0, total, {})
    lines = data.splitlines(keepends=True)
    assert len(lines) == len(expected) and set(lines) == expected, "a record was lost or stored twice"
    for t in range(threads):  # each writer's records are in its own order
        mine = [line for line in lines if line.startswith(f"thread-{t}-".encode())]
        assert mine == sorted(mine)
    chunks = meta.head_chunks(log_id, 0, 10**9)
    assert [c.base_offset for c in chunks] == [sum(len(c.data) for c in chunks[:i]) for i in range(len(chunks))]
    # every append was indexed (EVERY_APPEND), with the right line number under contention
    entries = meta.index_entries(log_id, 0, total)
    assert [e.offset for e in entries] == [c.base_offset for c in chunks]
    for entry in entries:
        assert entry.line == data[: entry.offset].count(b"\n")
    assert sum(conflicts) > 0, "the writers never raced; the test proves nothing"


# -- reading ------------------------------------------------------------------------------------


@pytest.fixture
def sealed_log(meta: MetaStore) -> tuple[int, bytes, dict[str, bytes]]:
    """A log with segment [0, 25) and head chunks [25, 30), [30, 50)."""
    _, log_id = new_log(meta)
    chunks = [b"0123456789", b"abcdefghijklmno", b"ABCDE", b"\n" * 5 + b"klmnopqrstuvwxy"]
    end = append_all(meta, log_id, chunks)
    assert end == 50
    segment_data: dict[str, bytes] = {}
    segment = seal(meta, log_id, 25, "jobs/x/worker-0/seg-0", segment_data)
    assert (segment.base_offset, segment.length) == (0, 25)
    return log_id, b"".join(chunks), segment_data


def test_read_plan_covers_the_range(meta: MetaStore, sealed_log: tuple[int, bytes, dict[str, bytes]]) -> None:
    log_id, log, segment_data = sealed_log
    ranges = [(0, 50), (0, 1), (5, 20), (24, 26), (25, 30), (26, 28), (29, 31), (12, 49), (49, 50), (30, 50)]
    for start, end in ranges:
        plan = meta.read_plan(log_id, start, end)
        assert plan_bytes(plan, start, end, segment_data) == log[start:end], f"read_plan({start}, {end})"


def test_read_plan_returns_only_overlapping_pieces(
    meta: MetaStore, sealed_log: tuple[int, bytes, dict[str, bytes]]
) -> None:
    """"Segments and head chunks that overlap [start, end)" - and nothing else."""
    log_id, _, _ = sealed_log
    cases = {  # (start, end): (segment bases, head chunk bases)
        (0, 50): ([0], [25, 30]),
        (5, 20): ([0], []),
        (24, 26): ([0], [25]),
        (25, 30): ([], [25]),
        (26, 28): ([], [25]),
        (31, 40): ([], [30]),
        (50, 60): ([], []),
    }
    for (start, end), (segs, head) in cases.items():
        plan = meta.read_plan(log_id, start, end)
        got = ([s.base_offset for s in plan.segments], [c.base_offset for c in plan.head])
        assert got == (segs, head), f"read_plan({start}, {end})"


def test_head_chunks_respects_max_bytes(meta: MetaStore) -> None:
    _, log_id = new_log(meta)
    chunks = [b"a" * 10, b"b" * 10, b"c" * 30, b"d" * 10]
    append_all(meta, log_id, chunks)

    def bases(start: int, max_bytes: int) -> list[int]:
        got = meta.head_chunks(log_id, start, max_bytes)
        for chunk in got:
            assert chunk.data == chunks[[0, 10, 20, 50].index(chunk.base_offset)]
        return [c.base_offset for c in got]

    assert bases(0, 10**6) == [0, 10, 20, 50]
    assert bases(0, 60) == [0, 10, 20, 50]
    assert bases(0, 59) == [0, 10, 20]
    assert bases(0, 20) == [0, 10]
    assert bases(0, 25) == [0, 10]
    assert bases(0, 10) == [0]
    assert bases(0, 1) == [0], "at least one chunk when any exists"
    assert bases(0, 0) == [0], "at least one chunk when any exists"
    assert bases(20, 5) == [20]
    assert bases(10, 40) == [10, 20]
    assert bases(50, 10**6) == [50]
    assert bases(60, 10**6) == []


# -- sealing ------------------------------------------------------------------------------------


def test_record_segment_is_a_compare_and_set(meta: MetaStore) -> None:
    _, log_id = new_log(meta)
    append_all(meta, log_id, [b"aaaaaaaaaa", b"bbbbbbbbbb", b"cccccccccc"])  # [0,10) [10,20) [20,30)

    first = Segment(0, 20, "jobs/j/w/00-20", 2000.0)
    assert meta.record_segment(log_id, first) is True
    state = meta.log_state_by_id(log_id)
    assert state is not None
    assert (state.start_offset, state.sealed_offset, state.end_offset, state.head_bytes) == (0, 20, 30, 10)
    assert meta.segments(log_id) == [first]
    assert meta.head_chunks(log_id, 20, 10**6) == [HeadChunk(20, b"cccccccccc")]
    plan = meta.read_plan(log_id, 0, 30)
    assert plan.head == (HeadChunk(20, b"cccccccccc"),), "covered head chunks must be dropped"
    assert plan.segments == (first,)

    # a second sealer of the same base loses and changes nothing
    for loser in (Segment(0, 20, "jobs/j/w/00-20-b", 2001.0), Segment(0, 30, "jobs/j/w/00-30", 2001.0)):
        assert meta.record_segment(log_id, loser) is False
        assert meta.segments(log_id) == [first]
        assert meta.log_state_by_id(log_id) == state
        assert meta.read_plan(log_id, 0, 30) == plan
        assert loser.blob_key not in meta.segment_keys("jobs/")

    # a segment extending past the end of the log is refused
    too_long = Segment(20, 11, "jobs/j/w/20-31", 2002.0)
    assert meta.record_segment(log_id, too_long) is False
    assert meta.segments(log_id) == [first]
    assert meta.log_state_by_id(log_id) == state
    assert meta.head_chunks(log_id, 20, 10**6) == [HeadChunk(20, b"cccccccccc")]

    # a base that is not the sealed offset is refused
    assert meta.record_segment(log_id, Segment(10, 20, "jobs/j/w/10-30", 2002.0)) is False
    assert meta.log_state_by_id(log_id) == state

    rest = Segment(20, 10, "jobs/j/w/20-30", 2003.0)
    assert meta.record_segment(log_id, rest) is True
    state = meta.log_state_by_id(log_id)
    assert state is not None
    assert (state.sealed_offset, state.end_offset, state.head_bytes) == (30, 30, 0)
    assert meta.segments(log_id) == [first, rest]
    assert meta.head_chunks(log_id, 30, 10**6) == []
    assert meta.read_plan(log_id, 0, 30) == ReadPlan((first, rest), ())
    assert meta.segment_keys("jobs/j/") == {first.blob_key, rest.blob_key}
    # appends continue after the sealed part, line count and offsets untouched by sealing
    assert meta.append(log_id, 30, b"d\n", 3000.0, EVERY_APPEND).end_offset == 32
    state = meta.log_state_by_id(log_id)
    assert state is not None and (state.sealed_offset, state.end_offset, state.line_count) == (30, 32, 1)


def test_concurrent_sealers_exactly_one_wins(meta: MetaStore) -> None:
    _, log_id = new_log(meta)
    append_all(meta, log_id, [b"x" * 100])
    sealers = 8
    barrier = threading.Barrier(sealers)

    def record(i: int) -> bool:
        barrier.wait()
        return meta.record_segment(log_id, Segment(0, 100, f"jobs/j/w/seg-{i}", 2000.0 + i))

    with ThreadPoolExecutor(sealers) as pool:
        won = list(pool.map(record, range(sealers)))
    assert won.count(True) == 1
    winner = won.index(True)
    assert meta.segments(log_id) == [Segment(0, 100, f"jobs/j/w/seg-{winner}", 2000.0 + winner)]
    assert meta.segment_keys("jobs/j/w/") == {f"jobs/j/w/seg-{winner}"}
    state = meta.log_state_by_id(log_id)
    assert state is not None and state.sealed_offset == 100


def test_read_plan_is_a_consistent_snapshot_while_sealing(meta: MetaStore) -> None:
    _, log_id = new_log(meta)
    records = [f"{i:05d} some log text\n".encode() for i in range(150)]
    log = b"".join(records)
    segment_data: dict[str, bytes] = {}
    done = threading.Event()
    failures: list[str] = []
    reads = [0]

    def write_and_seal() -> None:
        try:
            end = 0
            for i, record in enumerate(records):
                end = meta.append(log_id, end, record, 1000.0 + i, EVERY_APPEND).end_offset
                if i % 7 == 6:
                    seal(meta, log_id, 100, f"jobs/j/w/{i:05d}", segment_data)
        finally:
            done.set()

    def read() -> None:
        while not done.is_set():
            state = meta.log_state_by_id(log_id)
            assert state is not None
            plan = meta.read_plan(log_id, 0, state.end_offset)
            try:
                got = plan_bytes(plan, 0, state.end_offset, dict(segment_data))
            except AssertionError as exc:
                failures.append(f"end {state.end_offset}: {exc}")
                return
            if got != log[: state.end_offset]:
                failures.append(f"end {state.end_offset}: wrong bytes")
                return
            reads[0] += 1

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(write_and_seal), pool.submit(read), pool.submit(read)]
        for future in futures:
            future.result()
    assert failures == []
    assert reads[0] > 0
    state = meta.log_state_by_id(log_id)
    assert state is not None and state.end_offset == len(log)
    assert plan_bytes(meta.read_plan(log_id, 0, len(log)), 0, len(log), segment_data) == log


def test_segment_keys_by_literal_prefix(meta: MetaStore) -> None:
    _, log_id = new_log(meta)
    keys = [
        "jobs/a_b/w/0",
        "jobs/axb/w/0",
        "jobs/a%b/w/0",
        "jobs/a%/w/0",
        "jobs/aZZb/w/0",
        "jobs/a\\b/w/0",
        "jobs/a//b/0",
        "jobs/Ab/w/0",
        "other/a_b/w/0",
    ]
    end = 0
    for i, key in enumerate(keys):
        end = meta.append(log_id, end, b"x" * 10, 1000.0 + i, EVERY_APPEND).end_offset
        assert meta.record_segment(log_id, Segment(end - 10, 10, key, 2000.0))

    assert meta.segment_keys("") == set(keys)
    assert meta.segment_keys("jobs/") == set(keys) - {"other/a_b/w/0"}
    assert meta.segment_keys("jobs/a_") == {"jobs/a_b/w/0"}, "'_' must not match any character"
    assert meta.segment_keys("jobs/a%") == {"jobs/a%b/w/0", "jobs/a%/w/0"}, "'%' must not match anything"
    assert meta.segment_keys("jobs/a%b") == {"jobs/a%b/w/0"}
    assert meta.segment_keys("jobs/a\\") == {"jobs/a\\b/w/0"}
    assert meta.segment_keys("jobs/a//") == {"jobs/a//b/0"}
    assert meta.segment_keys("jobs/a_b/w/0") == {"jobs/a_b/w/0"}
    assert meta.segment_keys("jobs/a_b/w/0/") == set()
    assert meta.segment_keys("%") == set()
    assert meta.segment_keys("_") == set()
    assert meta.segment_keys("nothing") == set()


def test_segment_keys_prefix_is_case_sensitive(meta: MetaStore) -> None:
    """Job ids may differ only in case (`[A-Za-z0-9-]`), so `jobs/Ab/` must not match `jobs/ab/`."""
    _, log_id = new_log(meta)
    end = 0
    for key in ("jobs/Ab/w/0", "jobs/ab/w/0"):
        end = meta.append(log_id, end, b"x" * 10, 1000.0, EVERY_APPEND).end_offset
        assert meta.record_segment(log_id, Segment(end - 10, 10, key, 2000.0))
    assert meta.segment_keys("jobs/Ab/") == {"jobs/Ab/w/0"}
    assert meta.segment_keys("jobs/ab/") == {"jobs/ab/w/0"}
    assert meta.segment_keys("JOBS/") == set()


def test_logs_to_seal_by_idle_time_and_size(meta: MetaStore) -> None:
    tasks = ("idle", "busy-small", "busy-big", "empty", "sealed", "partly-sealed", "at-cutoff")
    job = make_job(tasks=tasks)
    meta.create_job(job)
    ids = {task: log_id_of(meta, job, task) for task in tasks}

    def put(task: str, size: int, now: float) -> None:
        state = meta.log_state_by_id(ids[task])
        assert state is not None
        assert meta.append(ids[task], state.end_offset, b"y" * size, now, EVERY_APPEND).stored

    put("idle", 10, 100.0)
    put("busy-small", 10, 200.0)
    put("busy-big", 600, 199.0)
    put("busy-big", 400, 200.0)  # head 1000 bytes
    put("sealed", 10, 100.0)
    assert meta.record_segment(ids["sealed"], Segment(0, 10, "jobs/j/sealed/0", 150.0))
    put("partly-sealed", 600, 200.0)
    put("partly-sealed", 900, 200.0)
    assert meta.record_segment(ids["partly-sealed"], Segment(0, 600, "jobs/j/partly/0", 201.0))  # head 900
    put("at-cutoff", 10, 150.0)

    due = meta.logs_to_seal(150.0, 1000)
    assert len(due) == len(set(due))
    assert set(due) == {ids["idle"], ids["busy-big"]}

    due = meta.logs_to_seal(250.0, 10**9)
    assert set(due) == {ids[t] for t in ("idle", "busy-small", "busy-big", "partly-sealed", "at-cutoff")}

    due = meta.logs_to_seal(0.0, 900)
    assert set(due) == {ids["busy-big"], ids["partly-sealed"]}

    assert meta.logs_to_seal(0.0, 10**9) == []


# -- deleting -----------------------------------------------------------------------------------


def test_delete_job_returns_segment_keys_and_removes_everything(meta: MetaStore) -> None:
    doomed = make_job(name="doomed", tasks=("worker-0", "worker-1"))
    kept = make_job(name="kept", tasks=("worker-0",))
    meta.create_job(doomed)
    meta.create_job(kept)
    segment_data: dict[str, bytes] = {}
    doomed_keys = []
    doomed_ids = [log_id_of(meta, doomed, t) for t in doomed.tasks]
    for task, log_id in zip(doomed.tasks, doomed_ids):
        append_all(meta, log_id, [b"a\n" * 5, b"b\n" * 5, b"c\n" * 5])
        for n in range(2):
            key = f"jobs/{doomed.id}/{task}/{n}"
            seal(meta, log_id, 10, key, segment_data)
            doomed_keys.append(key)
    kept_id = log_id_of(meta, kept, "worker-0")
    append_all(meta, kept_id, [b"keep\n", b"me\n"])
    kept_segment = seal(meta, kept_id, 5, f"jobs/{kept.id}/worker-0/0", segment_data)
    kept_state = meta.log_state_by_id(kept_id)
    kept_plan = meta.read_plan(kept_id, 0, 8)
    kept_index = meta.index_entries(kept_id, 0, 8)

    assert sorted(meta.delete_job("proj-a", doomed.id)) == sorted(doomed_keys)

    assert meta.get_job("proj-a", doomed.id) is None
    for task, log_id in zip(doomed.tasks, doomed_ids):
        assert meta.log_state("proj-a", doomed.id, task) is None
        assert meta.log_state_by_id(log_id) is None
        assert meta.log_owner(log_id) is None
        assert meta.segments(log_id) == []
        assert meta.head_chunks(log_id, 0, 10**6) == []
        assert meta.read_plan(log_id, 0, 30) == ReadPlan((), ())
        assert meta.index_entries(log_id, 0, 10**6) == []
        assert meta.index_floor_line(log_id, 10**6) is None
        assert meta.index_ceil_time(log_id, 0.0) is None
    assert meta.segment_keys(f"jobs/{doomed.id}/") == set()
    assert not set(meta.logs_to_seal(1e12, 1)) & set(doomed_ids)
    assert meta.delete_job("proj-a", doomed.id) == []

    # the other job is untouched
    assert meta.get_job("proj-a", kept.id) == kept
    assert meta.log_state_by_id(kept_id) == kept_state
    assert meta.read_plan(kept_id, 0, 8) == kept_plan
    assert meta.index_entries(kept_id, 0, 8) == kept_index
    assert meta.segments(kept_id) == [kept_segment]
    assert meta.segment_keys("jobs/") == {kept_segment.blob_key}

    # the name is free again, and the new job starts from scratch
    again = make_job(name="doomed", tasks=("worker-0",))
    meta.create_job(again)
    state = meta.log_state("proj-a", again.id, "worker-0")
    assert state is not None and state.end_offset == 0


# -- durability ---------------------------------------------------------------------------------


def _observe(meta: MetaStore, jobs: list[JobRecord]) -> dict[str, object]:
    """Everything the protocol can tell about `jobs`."""
    seen: dict[str, object] = {}
    for job in jobs:
        seen[f"job {job.id}"] = meta.get_job(job.project_id, job.id)
        for task in job.tasks:
            state = meta.log_state(job.project_id, job.id, task)
            assert isinstance(state, LogState)
            log_id = state.log_id
            seen[f"state {job.id}/{task}"] = state
            seen[f"by id {log_id}"] = meta.log_state_by_id(log_id)
            seen[f"owner {log_id}"] = meta.log_owner(log_id)
            seen[f"plan {log_id}"] = meta.read_plan(log_id, 0, state.end_offset)
            seen[f"head {log_id}"] = meta.head_chunks(log_id, state.sealed_offset, 10**6)
            seen[f"segments {log_id}"] = meta.segments(log_id)
            seen[f"index {log_id}"] = meta.index_entries(log_id, 0, 10**9)
            seen[f"floor line {log_id}"] = meta.index_floor_line(log_id, 3)
            seen[f"ceil time {log_id}"] = meta.index_ceil_time(log_id, 1001.5)
    seen["keys"] = meta.segment_keys("")
    seen["to seal"] = sorted(meta.logs_to_seal(1e12, 1))
    return seen


def test_everything_survives_close_and_reopen(meta_url: str) -> None:
    jobs = [
        make_job(project="proj-a", name="one", tasks=("worker-0", "worker-1"), document={"k": ["v", 1, {"n": None}]}),
        make_job(project="proj-b", name="one", tasks=("worker-0",)),
    ]
    segment_data: dict[str, bytes] = {}
    meta = open_meta(meta_url)
    try:
        for job in jobs:
            meta.create_job(job)
        a0 = log_id_of(meta, jobs[0], "worker-0")
        b0 = log_id_of(meta, jobs[1], "worker-0")
        append_all(meta, a0, [b"first\n", b"second\nthird\n", b"fourth", b"\nfifth\n"], now=1000.25)
        seal(meta, a0, 20, f"jobs/{jobs[0].id}/worker-0/0", segment_data)
        append_all(meta, b0, [b"\x00\xff binary\n"], now=1001.75)
        before = _observe(meta, jobs)
    finally:
        meta.close()
        meta.close()  # idempotent

    meta = open_meta(meta_url)
    try:
        assert _observe(meta, jobs) == before
        state = meta.log_state_by_id(a0)
        assert state is not None and state.end_offset == 32 and state.sealed_offset == 19
        assert not meta.append(a0, 0, b"stale", 3000.0, EVERY_APPEND).stored
        assert meta.append(a0, 32, b"sixth\n", 3000.0, EVERY_APPEND).end_offset == 38
        with pytest.raises(DuplicateJobName):
            meta.create_job(make_job(project="proj-a", name="one"))
        log = b"first\nsecond\nthird\nfourth\nfifth\nsixth\n"
        assert plan_bytes(meta.read_plan(a0, 0, 38), 0, 38, segment_data) == log
    finally:
        meta.close()


# -- follow: the poller's two queries ------------------------------------------------------------


def test_log_ends_and_job_phases_answer_for_many_logs_at_once(meta: MetaStore) -> None:
    jobs = [make_job(project=p, tasks=("worker-0", "worker-1")) for p in ("proj-a", "proj-b")]
    for job in jobs:
        meta.create_job(job)
    logs = [log_id_of(meta, job, task) for job in jobs for task in job.tasks]
    assert meta.log_ends(logs) == dict.fromkeys(logs, 0)
    append_all(meta, logs[1], [b"abc", b"de\n"])
    append_all(meta, logs[2], [b"\xff" * 7])
    seal(meta, logs[1], 3, f"jobs/{jobs[0].id}/worker-1/0", {})  # sealing moves no end offset
    assert meta.log_ends([*logs, 999_999]) == {logs[0]: 0, logs[1]: 6, logs[2]: 7, logs[3]: 0}
    assert meta.log_ends([]) == {}

    assert meta.update_job(dataclasses.replace(jobs[1], phase="Running"), ("Creating",))
    assert meta.job_phases([j.id for j in jobs] + ["no-such-job"]) == {jobs[0].id: "Creating", jobs[1].id: "Running"}
    assert meta.job_phases([]) == {}

    meta.delete_job("proj-a", jobs[0].id)
    assert meta.log_ends(logs) == {logs[2]: 7, logs[3]: 0}
    assert meta.job_phases([j.id for j in jobs]) == {jobs[1].id: "Running"}


def test_checkpoint_keeps_every_byte_across_reopen(meta_url: str) -> None:
    meta = open_meta(meta_url)
    _, log_id = new_log(meta)
    end = append_all(meta, log_id, [b"a" * 5000, b"b\n" * 3000, b"c"], now=1.0, policy=EVERY_APPEND)
    meta.checkpoint()
    meta.checkpoint()  # idempotent
    meta.close()
    reopened = open_meta(meta_url)
    try:
        plan = reopened.read_plan(log_id, 0, end)
        assert b"".join(c.data for c in plan.head) == b"a" * 5000 + b"b\n" * 3000 + b"c"
    finally:
        reopened.close()


# -- retention ----------------------------------------------------------------------------------


def _log_with_three_segments(meta: MetaStore) -> tuple[int, list[Segment], dict[str, bytes]]:
    """Segments [0, 10), [10, 25), [25, 30) created at 100, 200, 300, and head [30, 50)."""
    _, log_id = new_log(meta)
    # index entries at 0 (the first append) and 30 only
    append_all(meta, log_id, [b"ab\ncd\nefg\n", b"hijk\nlmnop\nqrst", b"u\nvw\n"], policy=NEVER_AFTER_FIRST)
    append_all(meta, log_id, [b"x\n" * 10], now=1003.0, policy=EVERY_APPEND)
    data: dict[str, bytes] = {}
    made = []
    for i, size in enumerate((10, 15, 5)):
        state = meta.log_state_by_id(log_id)
        assert state is not None
        chunks = meta.head_chunks(log_id, state.sealed_offset, size)
        body = b"".join(c.data for c in chunks)
        segment = Segment(chunks[0].base_offset, len(body), f"jobs/r/worker-0/{i}", created_at=100.0 * (i + 1))
        data[segment.blob_key] = body
        assert meta.record_segment(log_id, segment)
        made.append(segment)
    assert [(s.base_offset, s.length) for s in made] == [(0, 10), (10, 15), (25, 5)]
    return log_id, made, data


def test_logs_with_segments_before(meta: MetaStore) -> None:
    log_id, _, _ = _log_with_three_segments(meta)
    _, empty = new_log(meta)
    append_all(meta, empty, [b"head only\n"])
    assert meta.logs_with_segments_before(100.0) == []
    assert meta.logs_with_segments_before(100.5) == [log_id]
    assert meta.logs_with_segments_before(1e12) == [log_id]


def test_drop_segments_advances_start_and_keeps_line_numbers(meta: MetaStore) -> None:
    log_id, made, data = _log_with_three_segments(meta)
    full = b"ab\ncd\nefg\nhijk\nlmnop\nqrst" + b"u\nvw\n" + b"x\n" * 10
    before = meta.log_state_by_id(log_id)
    assert before is not None
    # the new start must be a segment end above the start and not past the sealed offset
    for refused in (IndexEntry(0, 0, 1.0), IndexEntry(5, 1, 1.0), IndexEntry(40, 20, 1.0)):
        assert meta.drop_segments(log_id, 0, refused) == []
    assert meta.drop_segments(log_id, 3, IndexEntry(10, 3, 1.0)) == []  # wrong expected start
    assert meta.log_state_by_id(log_id) == before
    # drop the first two: there is no index entry at 25 (inside an append), so it is added
    assert meta.drop_segments(log_id, 0, IndexEntry(25, full[:25].count(b"\n"), 1001.0)) == [made[0].blob_key, made[1].blob_key]
    after = meta.log_state_by_id(log_id)
    assert after is not None
    assert (after.start_offset, after.sealed_offset, after.end_offset, after.line_count) == (
        25, before.sealed_offset, before.end_offset, before.line_count)
    assert meta.segments(log_id) == [made[2]]
    assert meta.segment_keys("jobs/r/") == {made[2].blob_key}
    assert all(e.offset >= 25 for e in meta.index_entries(log_id, 0, 10**9))
    assert meta.index_floor_offset(log_id, 25) == IndexEntry(25, 5, 1001.0)
    assert meta.index_floor_offset(log_id, 24) is None
    assert meta.index_floor_line(log_id, 5) == IndexEntry(25, 5, 1001.0)
    assert meta.index_floor_line(log_id, 4) is None
    plan = meta.read_plan(log_id, 25, 50)
    assert plan_bytes(plan, 25, 50, data) == full[25:]
    # idempotent: the start moved, so the same call is refused
    assert meta.drop_segments(log_id, 0, IndexEntry(25, 5, 1001.0)) == []
    # an entry already at the new start is kept as it is
    assert meta.index_floor_offset(log_id, 30) == IndexEntry(30, 7, 1003.0)
    assert meta.drop_segments(log_id, 25, IndexEntry(30, 7, 5.0)) == [made[2].blob_key]
    cleared = meta.log_state_by_id(log_id)
    assert cleared is not None and cleared.start_offset == cleared.sealed_offset == 30
    assert meta.index_floor_offset(log_id, 30) == IndexEntry(30, 7, 1003.0)
    assert meta.segments(log_id) == [] and meta.logs_with_segments_before(1e12) == []
    # the head is untouched and appends go on
    assert plan_bytes(meta.read_plan(log_id, 30, 50), 30, 50, data) == full[30:]
    assert meta.append(log_id, 50, b"y\n", 2000.0, EVERY_APPEND).stored


def test_drop_segments_races_with_appends_and_seals(meta: MetaStore) -> None:
    _, log_id = new_log(meta)
    append_all(meta, log_id, [b"a\n" * 50], policy=EVERY_APPEND)
    data: dict[str, bytes] = {}
    first = seal(meta, log_id, 10**6, "jobs/race/worker-0/0", data)
    stop = threading.Event()

    def writer() -> None:
        end = 100
        while not stop.is_set():
            outcome = meta.append(log_id, end, b"b\n", 3000.0, EVERY_APPEND)
            end = outcome.end_offset
            state = meta.log_state_by_id(log_id)
            assert state is not None
            chunks = meta.head_chunks(log_id, state.sealed_offset, 10)
            if chunks:
                body = b"".join(c.data for c in chunks)
                meta.record_segment(log_id, Segment(chunks[0].base_offset, len(body), f"k{end}", 3000.0))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.05)
        assert meta.drop_segments(log_id, 0, IndexEntry(first.end_offset, 50, 1.0)) == [first.blob_key]
        time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    state = meta.log_state_by_id(log_id)
    assert state is not None and state.start_offset == 100
    segments = meta.segments(log_id)
    assert segments[0].base_offset == 100
    assert all(segments[i].end_offset == segments[i + 1].base_offset for i in range(len(segments) - 1))
    assert segments[-1].end_offset == state.sealed_offset
    assert state.line_count == state.end_offset // 2
