"""Conformance suite for `jobtail.core.log_records.LogHeads`: a task log's offsets and its head
(appends, their arrival times, what a seal takes), on every backend; another head implementation
passes the same tests. Nothing here looks at tables or SQL.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from support.meta_records import (
    EVERY_APPEND,
    Meta,
    ReadPlan,
    append,
    append_all,
    log_id_of,
    make_job,
    new_log,
    open_meta,
    pieces,
    plan_bytes,
    read_plan,
    seal,
    us,
)

from jobtail.core.types import Arrival, IndexEntry, Segment


def test_append_is_compare_and_append(meta: Meta) -> None:
    _, log_id = new_log(meta)
    first = append(meta, log_id, 0, b"hello\nworld\n", 1000.0, EVERY_APPEND)
    assert first.stored and first.end_offset == 12

    for stale in (0, 5, 11, 13, 100):
        outcome = append(meta, log_id, stale, b"XXXX\n", 1001.0 + stale, EVERY_APPEND)
        assert not outcome.stored, f"append at {stale} stored although the log ends at 12"
        assert outcome.end_offset == 12

    state = meta.logs.log_state_by_id(log_id)
    assert state is not None
    assert (state.end_offset, state.sealed_offset, state.line_count, state.last_append_at) == (12, 0, 2, 1000.0)
    assert pieces(meta.logs.head_to_seal(log_id, 0, 10**6)) == [(0, b"hello\nworld\n")]
    assert meta.logs.index_entries(log_id, 0, 10**6) == [IndexEntry(0, 0, 1000.0)]

    second = append(meta, log_id, 12, b"more", 1002.0, EVERY_APPEND)
    assert second.stored and second.end_offset == 16
    state = meta.logs.log_state_by_id(log_id)
    assert state is not None
    assert (state.end_offset, state.line_count, state.last_append_at) == (16, 2, 1002.0)
    assert plan_bytes(read_plan(meta, log_id, 0, 16), 0, 16, {}) == b"hello\nworld\nmore"


def test_append_counts_lines_and_touches_only_its_log(meta: Meta) -> None:
    job = make_job(tasks=("worker-0", "worker-1"))
    meta.jobs.create_job(job)
    a, b = log_id_of(meta, job, "worker-0"), log_id_of(meta, job, "worker-1")
    chunks = [b"one\ntwo\n", b"no newline", b"\n", b"\n\n\nx", b"\xff\xfe binary \x00\n"]
    end = append_all(meta, a, chunks, now=1234.5)
    state = meta.logs.log_state_by_id(a)
    assert state is not None
    assert state.end_offset == end == sum(map(len, chunks))
    assert state.line_count == b"".join(chunks).count(b"\n") == 7
    assert state.last_append_at == 1234.5 + len(chunks) - 1
    assert plan_bytes(read_plan(meta, a, 0, end), 0, end, {}) == b"".join(chunks)

    other = meta.logs.log_state_by_id(b)
    assert other is not None
    assert (other.end_offset, other.line_count, other.last_append_at) == (0, 0, None)
    assert read_plan(meta, b, 0, 100) == ReadPlan((), ())


def test_concurrent_appends_store_every_byte_exactly_once(meta: Meta) -> None:
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
                outcome = append(meta, log_id, end, record, time.time(), EVERY_APPEND)
                end = outcome.end_offset
                if outcome.stored:
                    break
                conflicts[t] += 1

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(writer, range(threads)))

    expected = {f"thread-{t}-record-{i:03d}\n".encode() for t in range(threads) for i in range(per_thread)}
    total = sum(map(len, expected))
    state = meta.logs.log_state_by_id(log_id)
    assert state is not None
    assert state.end_offset == total
    assert state.line_count == len(expected)
    data = plan_bytes(read_plan(meta, log_id, 0, total), 0, total, {})
    lines = data.splitlines(keepends=True)
    assert len(lines) == len(expected) and set(lines) == expected, "a record was lost or stored twice"
    for t in range(threads):  # each writer's records are in its own order
        mine = [line for line in lines if line.startswith(f"thread-{t}-".encode())]
        assert mine == sorted(mine)
    chunks = meta.logs.head_to_seal(log_id, 0, 10**9)
    assert [c.base_offset for c in chunks] == [sum(len(c.data) for c in chunks[:i]) for i in range(len(chunks))]
    # every append was indexed (EVERY_APPEND), with the right line number under contention
    entries = meta.logs.index_entries(log_id, 0, total)
    assert [e.offset for e in entries] == [c.base_offset for c in chunks]
    for entry in entries:
        assert entry.line == data[: entry.offset].count(b"\n")
    assert sum(conflicts) > 0, "the writers never raced; the test proves nothing"


def test_head_chunks_respects_max_bytes(meta: Meta) -> None:
    _, log_id = new_log(meta)
    chunks = [b"a" * 10, b"b" * 10, b"c" * 30, b"d" * 10]
    append_all(meta, log_id, chunks)

    def bases(start: int, max_bytes: int) -> list[int]:
        got = meta.logs.head_to_seal(log_id, start, max_bytes)
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


def test_logs_to_seal_by_idle_time_and_size(meta: Meta) -> None:
    tasks = ("idle", "busy-small", "busy-big", "empty", "sealed", "partly-sealed", "at-cutoff")
    job = make_job(tasks=tasks)
    meta.jobs.create_job(job)
    ids = {task: log_id_of(meta, job, task) for task in tasks}

    def put(task: str, size: int, now: float) -> None:
        state = meta.logs.log_state_by_id(ids[task])
        assert state is not None
        assert append(meta, ids[task], state.end_offset, b"y" * size, now, EVERY_APPEND).stored

    put("idle", 10, 100.0)
    put("busy-small", 10, 200.0)
    put("busy-big", 600, 199.0)
    put("busy-big", 400, 200.0)  # head 1000 bytes
    put("sealed", 10, 100.0)
    assert meta.logs.record_segment(ids["sealed"], Segment(0, 10, "jobs/j/sealed/0", 150.0))
    put("partly-sealed", 600, 200.0)
    put("partly-sealed", 900, 200.0)
    assert meta.logs.record_segment(ids["partly-sealed"], Segment(0, 600, "jobs/j/partly/0", 201.0))  # head 900
    put("at-cutoff", 10, 150.0)

    due = meta.logs.logs_to_seal(150.0, 1000)
    assert len(due) == len(set(due))
    assert set(due) == {ids["idle"], ids["busy-big"]}

    due = meta.logs.logs_to_seal(250.0, 10**9)
    assert set(due) == {ids[t] for t in ("idle", "busy-small", "busy-big", "partly-sealed", "at-cutoff")}

    due = meta.logs.logs_to_seal(0.0, 900)
    assert set(due) == {ids["busy-big"], ids["partly-sealed"]}

    assert meta.logs.logs_to_seal(0.0, 10**9) == []


def test_checkpoint_keeps_every_byte_across_reopen(meta_url: str) -> None:
    meta = open_meta(meta_url)
    _, log_id = new_log(meta)
    end = append_all(meta, log_id, [b"a" * 5000, b"b\n" * 3000, b"c"], now=1.0, policy=EVERY_APPEND)
    meta.logs.checkpoint()
    meta.logs.checkpoint()  # idempotent
    meta.close()
    reopened = open_meta(meta_url)
    try:
        plan = read_plan(reopened, log_id, 0, end)
        assert b"".join(c.data for c in plan.head) == b"a" * 5000 + b"b\n" * 3000 + b"c"
    finally:
        reopened.close()


def test_the_head_keeps_each_append_s_arrival_and_it_never_goes_back(meta: Meta) -> None:
    _, log_id = new_log(meta)
    end = 0
    for data, at in ((b"a\n", 10.0), (b"bb\n", 12.5), (b"c\n", 11.0)):  # the last writer's clock is behind
        end = append(meta, log_id, end, data, at, EVERY_APPEND).end_offset
    assert meta.logs.head_arrivals(log_id, 0, 100) == [Arrival(0, us(10.0)), Arrival(2, us(12.5)), Arrival(5, us(12.5))]
    assert meta.logs.head_arrivals(log_id, 3, 4) == [Arrival(2, us(12.5))], "only the appends overlapping the range"
    assert meta.logs.head_arrivals(log_id, 7, 100) == []
    assert [(c.base_offset, c.data, c.arrived_us) for c in meta.logs.head_chunks(log_id, 1, 3)] == [
        (0, b"a\n", us(10.0)), (2, b"bb\n", us(12.5))]
    assert [c.arrived_us for c in meta.logs.head_to_seal(log_id, 0, 10**6)] == [us(10.0), us(12.5), us(12.5)]
    state = meta.logs.log_state_by_id(log_id)
    assert state is not None and state.last_append_at == 12.5
    seal(meta, log_id, 10**6, "jobs/a/worker-0/0", {})
    assert meta.logs.head_arrivals(log_id, 0, 100) == [], "sealed: the segment's trailer has them now"
