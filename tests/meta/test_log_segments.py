"""Conformance suite for `jobtail.core.log_records.LogSegments`: segment records, the sparse index,
reading a range the engine's way (head first, then segments) while seals race, and retention, on
every backend. Nothing here looks at tables or SQL.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.meta_records import (
    EVERY_APPEND,
    NEVER_AFTER_FIRST,
    Meta,
    ReadPlan,
    append,
    append_all,
    log_id_of,
    make_job,
    new_log,
    pieces,
    plan_bytes,
    read_plan,
    seal,
)

from jobtail.core.types import IndexEntry, IndexPolicy, Segment


def test_index_entries_follow_the_policy(meta: Meta) -> None:
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
        outcome = append(meta, log_id, end, data, now, policy)
        assert outcome.stored
        # a refused append adds no entry, even when the policy would want one
        assert not append(meta, log_id, end, b"zz\n", now + 500, policy).stored
        end, log = outcome.end_offset, log + data

    entries = meta.logs.index_entries(log_id, 0, end + 1)
    assert entries == expected
    assert [e.offset for e in entries] == [0, 100, 104]
    assert [e.line for e in entries] == [0, 25, 27]
    for entry in entries:
        assert entry.line == log[: entry.offset].count(b"\n")


def test_index_first_append_always_gets_an_entry(meta: Meta) -> None:
    _, log_id = new_log(meta)
    end = append_all(meta, log_id, [b"x\n", b"y\n", b"z\n"], now=50.0, policy=NEVER_AFTER_FIRST)
    assert meta.logs.index_entries(log_id, 0, end) == [IndexEntry(0, 0, 50.0)]


def test_index_floor_line_and_time(meta: Meta) -> None:
    job = make_job(tasks=("worker-0", "worker-1"))
    meta.jobs.create_job(job)
    log_id, other = log_id_of(meta, job, "worker-0"), log_id_of(meta, job, "worker-1")
    policy = IndexPolicy(every_bytes=100, every_seconds=10.0)
    # entries at (offset 0, line 0, t 1000), (100, 25, 1003), (104, 27, 1013)
    end = 0
    steps = [(1000.0, b"a\n" * 10 + b"b" * 50 + b"c\n" * 15), (1003.0, b"d\n"), (1012.5, b"e\n"), (1013.0, b"f\n")]
    for now, data in steps:
        end = append(meta, log_id, end, data, now, policy).end_offset
    first, second, third = IndexEntry(0, 0, 1000.0), IndexEntry(100, 25, 1003.0), IndexEntry(104, 27, 1013.0)
    assert meta.logs.index_entries(log_id, 0, end) == [first, second, third]
    # another log's entries, in between in time and line, must never show up
    append_all(meta, other, [b"\n" * 30, b"\n" * 30], now=1001.0, policy=EVERY_APPEND)

    assert meta.logs.index_floor_line(log_id, -1) is None
    assert meta.logs.index_floor_line(log_id, 0) == first
    assert meta.logs.index_floor_line(log_id, 24) == first
    assert meta.logs.index_floor_line(log_id, 25) == second
    assert meta.logs.index_floor_line(log_id, 26) == second
    assert meta.logs.index_floor_line(log_id, 27) == third
    assert meta.logs.index_floor_line(log_id, 10**9) == third

    assert meta.logs.index_ceil_time(log_id, 0.0) == first
    assert meta.logs.index_ceil_time(log_id, 1000.0) == first
    assert meta.logs.index_ceil_time(log_id, 1000.001) == second
    assert meta.logs.index_ceil_time(log_id, 1003.0) == second
    assert meta.logs.index_ceil_time(log_id, 1012.0) == third
    assert meta.logs.index_ceil_time(log_id, 1013.0) == third
    assert meta.logs.index_ceil_time(log_id, 1013.001) is None

    assert meta.logs.index_floor_offset(log_id, 0) == first
    assert meta.logs.index_floor_offset(log_id, 99) == first
    assert meta.logs.index_floor_offset(log_id, 100) == second
    assert meta.logs.index_floor_offset(log_id, 10**9) == third

    assert meta.logs.index_entries(log_id, 0, 100) == [first]
    assert meta.logs.index_entries(log_id, 0, 101) == [first, second]
    assert meta.logs.index_entries(log_id, 100, 104) == [second]
    assert meta.logs.index_entries(log_id, 101, 104) == []
    assert meta.logs.index_entries(log_id, 104, 105) == [third]
    assert meta.logs.index_entries(log_id, 105, 10**9) == []
    assert meta.logs.index_entries(log_id, 50, 50) == []


def test_index_floor_line_picks_the_last_entry_of_equal_lines(meta: Meta) -> None:
    _, log_id = new_log(meta)
    policy = IndexPolicy(every_bytes=100, every_seconds=1e9)
    end = append_all(meta, log_id, [b"x" * 100, b"y" * 100, b"z" * 99 + b"\n", b"w"], now=10.0, policy=policy)
    entries = meta.logs.index_entries(log_id, 0, end)
    assert entries == [IndexEntry(0, 0, 10.0), IndexEntry(100, 0, 11.0), IndexEntry(200, 0, 12.0), IndexEntry(300, 1, 13.0)]
    assert meta.logs.index_floor_line(log_id, 0) == IndexEntry(200, 0, 12.0)
    assert meta.logs.index_floor_line(log_id, 1) == IndexEntry(300, 1, 13.0)


def test_index_has_entries_inside_large_appends(meta: Meta) -> None:
    _, log_id = new_log(meta)
    policy = IndexPolicy(every_bytes=100, every_seconds=1e9)
    data = b"ab\n" * 50 + b"x" * 150 + b"\n\n"  # 302 bytes: newlines before 100, 200, 300 = 33, 50, 50
    end = append(meta, log_id, 0, data, 7.0, policy).end_offset
    assert meta.logs.index_entries(log_id, 0, end) == [
        IndexEntry(0, 0, 7.0), IndexEntry(100, 33, 7.0), IndexEntry(200, 50, 7.0), IndexEntry(300, 50, 7.0)]
    assert meta.logs.index_floor_offset(log_id, 250) == IndexEntry(200, 50, 7.0)
    # the next append is spaced from the last inner entry, not from the append's start
    end = append(meta, log_id, end, b"y" * 98, 8.0, policy).end_offset
    assert meta.logs.index_entries(log_id, 301, end) == []
    append(meta, log_id, end, b"z", 9.0, policy)
    assert meta.logs.index_entries(log_id, 301, 10**6) == [IndexEntry(400, 52, 9.0)]


def test_empty_log_has_no_index(meta: Meta) -> None:
    _, log_id = new_log(meta)
    assert meta.logs.index_floor_line(log_id, 10) is None
    assert meta.logs.index_ceil_time(log_id, 0.0) is None
    assert meta.logs.index_entries(log_id, 0, 10**9) == []


@pytest.fixture
def sealed_log(meta: Meta) -> tuple[int, bytes, dict[str, bytes]]:
    """A log with segment [0, 25) and head chunks [25, 30), [30, 50)."""
    _, log_id = new_log(meta)
    chunks = [b"0123456789", b"abcdefghijklmno", b"ABCDE", b"\n" * 5 + b"klmnopqrstuvwxy"]
    end = append_all(meta, log_id, chunks)
    assert end == 50
    segment_data: dict[str, bytes] = {}
    segment = seal(meta, log_id, 25, "jobs/x/worker-0/seg-0", segment_data)
    assert (segment.base_offset, segment.length) == (0, 25)
    return log_id, b"".join(chunks), segment_data


def test_read_plan_covers_the_range(meta: Meta, sealed_log: tuple[int, bytes, dict[str, bytes]]) -> None:
    log_id, log, segment_data = sealed_log
    ranges = [(0, 50), (0, 1), (5, 20), (24, 26), (25, 30), (26, 28), (29, 31), (12, 49), (49, 50), (30, 50)]
    for start, end in ranges:
        plan = read_plan(meta, log_id, start, end)
        assert plan_bytes(plan, start, end, segment_data) == log[start:end], f"read_plan({start}, {end})"


def test_read_plan_returns_only_overlapping_pieces(
    meta: Meta, sealed_log: tuple[int, bytes, dict[str, bytes]]
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
        plan = read_plan(meta, log_id, start, end)
        got = ([s.base_offset for s in plan.segments], [c.base_offset for c in plan.head])
        assert got == (segs, head), f"read_plan({start}, {end})"


def test_record_segment_is_a_compare_and_set(meta: Meta) -> None:
    _, log_id = new_log(meta)
    append_all(meta, log_id, [b"aaaaaaaaaa", b"bbbbbbbbbb", b"cccccccccc"])  # [0,10) [10,20) [20,30)

    first = Segment(0, 20, "jobs/j/w/00-20", 2000.0)
    assert meta.logs.record_segment(log_id, first) is True
    state = meta.logs.log_state_by_id(log_id)
    assert state is not None
    assert (state.start_offset, state.sealed_offset, state.end_offset, state.head_bytes) == (0, 20, 30, 10)
    assert meta.logs.segments(log_id) == [first]
    assert pieces(meta.logs.head_to_seal(log_id, 20, 10**6)) == [(20, b"cccccccccc")]
    plan = read_plan(meta, log_id, 0, 30)
    assert pieces(plan.head) == [(20, b"cccccccccc")], "covered head chunks must be dropped"
    assert plan.segments == (first,)

    # a second sealer of the same base loses and changes nothing
    for loser in (Segment(0, 20, "jobs/j/w/00-20-b", 2001.0), Segment(0, 30, "jobs/j/w/00-30", 2001.0)):
        assert meta.logs.record_segment(log_id, loser) is False
        assert meta.logs.segments(log_id) == [first]
        assert meta.logs.log_state_by_id(log_id) == state
        assert read_plan(meta, log_id, 0, 30) == plan
        assert loser.blob_key not in meta.logs.segment_keys("jobs/")

    # a segment extending past the end of the log is refused
    too_long = Segment(20, 11, "jobs/j/w/20-31", 2002.0)
    assert meta.logs.record_segment(log_id, too_long) is False
    assert meta.logs.segments(log_id) == [first]
    assert meta.logs.log_state_by_id(log_id) == state
    assert pieces(meta.logs.head_to_seal(log_id, 20, 10**6)) == [(20, b"cccccccccc")]

    # a base that is not the sealed offset is refused
    assert meta.logs.record_segment(log_id, Segment(10, 20, "jobs/j/w/10-30", 2002.0)) is False
    assert meta.logs.log_state_by_id(log_id) == state

    rest = Segment(20, 10, "jobs/j/w/20-30", 2003.0)
    assert meta.logs.record_segment(log_id, rest) is True
    state = meta.logs.log_state_by_id(log_id)
    assert state is not None
    assert (state.sealed_offset, state.end_offset, state.head_bytes) == (30, 30, 0)
    assert meta.logs.segments(log_id) == [first, rest]
    assert meta.logs.head_to_seal(log_id, 30, 10**6) == []
    assert read_plan(meta, log_id, 0, 30) == ReadPlan((first, rest), ())
    assert meta.logs.segment_keys("jobs/j/") == {first.blob_key, rest.blob_key}
    # appends continue after the sealed part, line count and offsets untouched by sealing
    assert append(meta, log_id, 30, b"d\n", 3000.0, EVERY_APPEND).end_offset == 32
    state = meta.logs.log_state_by_id(log_id)
    assert state is not None and (state.sealed_offset, state.end_offset, state.line_count) == (30, 32, 1)


def test_concurrent_sealers_exactly_one_wins(meta: Meta) -> None:
    _, log_id = new_log(meta)
    append_all(meta, log_id, [b"x" * 100])
    sealers = 8
    barrier = threading.Barrier(sealers)

    def record(i: int) -> bool:
        barrier.wait()
        return meta.logs.record_segment(log_id, Segment(0, 100, f"jobs/j/w/seg-{i}", 2000.0 + i))

    with ThreadPoolExecutor(sealers) as pool:
        won = list(pool.map(record, range(sealers)))
    assert won.count(True) == 1
    winner = won.index(True)
    assert meta.logs.segments(log_id) == [Segment(0, 100, f"jobs/j/w/seg-{winner}", 2000.0 + winner)]
    assert meta.logs.segment_keys("jobs/j/w/") == {f"jobs/j/w/seg-{winner}"}
    state = meta.logs.log_state_by_id(log_id)
    assert state is not None and state.sealed_offset == 100


def test_read_plan_is_a_consistent_snapshot_while_sealing(meta: Meta) -> None:
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
                end = append(meta, log_id, end, record, 1000.0 + i, EVERY_APPEND).end_offset
                if i % 7 == 6:
                    seal(meta, log_id, 100, f"jobs/j/w/{i:05d}", segment_data)
        finally:
            done.set()

    def read() -> None:
        while not done.is_set():
            state = meta.logs.log_state_by_id(log_id)
            assert state is not None
            plan = read_plan(meta, log_id, 0, state.end_offset)
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
    state = meta.logs.log_state_by_id(log_id)
    assert state is not None and state.end_offset == len(log)
    assert plan_bytes(read_plan(meta, log_id, 0, len(log)), 0, len(log), segment_data) == log


def test_segment_keys_by_literal_prefix(meta: Meta) -> None:
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
        end = append(meta, log_id, end, b"x" * 10, 1000.0 + i, EVERY_APPEND).end_offset
        assert meta.logs.record_segment(log_id, Segment(end - 10, 10, key, 2000.0))

    assert meta.logs.segment_keys("") == set(keys)
    assert meta.logs.segment_keys("jobs/") == set(keys) - {"other/a_b/w/0"}
    assert meta.logs.segment_keys("jobs/a_") == {"jobs/a_b/w/0"}, "'_' must not match any character"
    assert meta.logs.segment_keys("jobs/a%") == {"jobs/a%b/w/0", "jobs/a%/w/0"}, "'%' must not match anything"
    assert meta.logs.segment_keys("jobs/a%b") == {"jobs/a%b/w/0"}
    assert meta.logs.segment_keys("jobs/a\\") == {"jobs/a\\b/w/0"}
    assert meta.logs.segment_keys("jobs/a//") == {"jobs/a//b/0"}
    assert meta.logs.segment_keys("jobs/a_b/w/0") == {"jobs/a_b/w/0"}
    assert meta.logs.segment_keys("jobs/a_b/w/0/") == set()
    assert meta.logs.segment_keys("%") == set()
    assert meta.logs.segment_keys("_") == set()
    assert meta.logs.segment_keys("nothing") == set()


def test_segment_keys_prefix_is_case_sensitive(meta: Meta) -> None:
    """Job ids may differ only in case (`[A-Za-z0-9-]`), so `jobs/Ab/` must not match `jobs/ab/`."""
    _, log_id = new_log(meta)
    end = 0
    for key in ("jobs/Ab/w/0", "jobs/ab/w/0"):
        end = append(meta, log_id, end, b"x" * 10, 1000.0, EVERY_APPEND).end_offset
        assert meta.logs.record_segment(log_id, Segment(end - 10, 10, key, 2000.0))
    assert meta.logs.segment_keys("jobs/Ab/") == {"jobs/Ab/w/0"}
    assert meta.logs.segment_keys("jobs/ab/") == {"jobs/ab/w/0"}
    assert meta.logs.segment_keys("JOBS/") == set()


def _log_with_three_segments(meta: Meta) -> tuple[int, list[Segment], dict[str, bytes]]:
    """Segments [0, 10), [10, 25), [25, 30) created at 100, 200, 300, and head [30, 50)."""
    _, log_id = new_log(meta)
    # index entries at 0 (the first append) and 30 only
    append_all(meta, log_id, [b"ab\ncd\nefg\n", b"hijk\nlmnop\nqrst", b"u\nvw\n"], policy=NEVER_AFTER_FIRST)
    append_all(meta, log_id, [b"x\n" * 10], now=1003.0, policy=EVERY_APPEND)
    data: dict[str, bytes] = {}
    made = []
    for i, size in enumerate((10, 15, 5)):
        state = meta.logs.log_state_by_id(log_id)
        assert state is not None
        chunks = meta.logs.head_to_seal(log_id, state.sealed_offset, size)
        body = b"".join(c.data for c in chunks)
        segment = Segment(chunks[0].base_offset, len(body), f"jobs/r/worker-0/{i}", created_at=100.0 * (i + 1))
        data[segment.blob_key] = body
        assert meta.logs.record_segment(log_id, segment)
        made.append(segment)
    assert [(s.base_offset, s.length) for s in made] == [(0, 10), (10, 15), (25, 5)]
    return log_id, made, data


def test_logs_with_segments_before(meta: Meta) -> None:
    log_id, _, _ = _log_with_three_segments(meta)
    _, empty = new_log(meta)
    append_all(meta, empty, [b"head only\n"])
    assert meta.logs.logs_with_segments_before(100.0) == []
    assert meta.logs.logs_with_segments_before(100.5) == [log_id]
    assert meta.logs.logs_with_segments_before(1e12) == [log_id]


def test_drop_segments_advances_start_and_keeps_line_numbers(meta: Meta) -> None:
    log_id, made, data = _log_with_three_segments(meta)
    full = b"ab\ncd\nefg\nhijk\nlmnop\nqrst" + b"u\nvw\n" + b"x\n" * 10
    before = meta.logs.log_state_by_id(log_id)
    assert before is not None
    # the new start must be a segment end above the start and not past the sealed offset
    for refused in (IndexEntry(0, 0, 1.0), IndexEntry(5, 1, 1.0), IndexEntry(40, 20, 1.0)):
        assert meta.logs.drop_segments(log_id, 0, refused) == []
    assert meta.logs.drop_segments(log_id, 3, IndexEntry(10, 3, 1.0)) == []  # wrong expected start
    assert meta.logs.log_state_by_id(log_id) == before
    # drop the first two: there is no index entry at 25 (inside an append), so it is added
    dropped = meta.logs.drop_segments(log_id, 0, IndexEntry(25, full[:25].count(b"\n"), 1001.0))
    assert dropped == [made[0].blob_key, made[1].blob_key]
    after = meta.logs.log_state_by_id(log_id)
    assert after is not None
    assert (after.start_offset, after.sealed_offset, after.end_offset, after.line_count) == (
        25, before.sealed_offset, before.end_offset, before.line_count)
    assert meta.logs.segments(log_id) == [made[2]]
    assert meta.logs.segment_keys("jobs/r/") == {made[2].blob_key}
    assert all(e.offset >= 25 for e in meta.logs.index_entries(log_id, 0, 10**9))
    assert meta.logs.index_floor_offset(log_id, 25) == IndexEntry(25, 5, 1001.0)
    assert meta.logs.index_floor_offset(log_id, 24) is None
    assert meta.logs.index_floor_line(log_id, 5) == IndexEntry(25, 5, 1001.0)
    assert meta.logs.index_floor_line(log_id, 4) is None
    plan = read_plan(meta, log_id, 25, 50)
    assert plan_bytes(plan, 25, 50, data) == full[25:]
    # idempotent: the start moved, so the same call is refused
    assert meta.logs.drop_segments(log_id, 0, IndexEntry(25, 5, 1001.0)) == []
    # an entry already at the new start is kept as it is
    assert meta.logs.index_floor_offset(log_id, 30) == IndexEntry(30, 7, 1003.0)
    assert meta.logs.drop_segments(log_id, 25, IndexEntry(30, 7, 5.0)) == [made[2].blob_key]
    cleared = meta.logs.log_state_by_id(log_id)
    assert cleared is not None and cleared.start_offset == cleared.sealed_offset == 30
    assert meta.logs.index_floor_offset(log_id, 30) == IndexEntry(30, 7, 1003.0)
    assert meta.logs.segments(log_id) == [] and meta.logs.logs_with_segments_before(1e12) == []
    # the head is untouched and appends go on
    assert plan_bytes(read_plan(meta, log_id, 30, 50), 30, 50, data) == full[30:]
    assert append(meta, log_id, 50, b"y\n", 2000.0, EVERY_APPEND).stored


def test_drop_segments_races_with_appends_and_seals(meta: Meta) -> None:
    _, log_id = new_log(meta)
    append_all(meta, log_id, [b"a\n" * 50], policy=EVERY_APPEND)
    data: dict[str, bytes] = {}
    first = seal(meta, log_id, 10**6, "jobs/race/worker-0/0", data)
    stop = threading.Event()

    def writer() -> None:
        end = 100
        while not stop.is_set():
            outcome = append(meta, log_id, end, b"b\n", 3000.0, EVERY_APPEND)
            end = outcome.end_offset
            state = meta.logs.log_state_by_id(log_id)
            assert state is not None
            chunks = meta.logs.head_to_seal(log_id, state.sealed_offset, 10)
            if chunks:
                body = b"".join(c.data for c in chunks)
                meta.logs.record_segment(log_id, Segment(chunks[0].base_offset, len(body), f"k{end}", 3000.0))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.05)
        assert meta.logs.drop_segments(log_id, 0, IndexEntry(first.end_offset, 50, 1.0)) == [first.blob_key]
        time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    state = meta.logs.log_state_by_id(log_id)
    assert state is not None and state.start_offset == 100
    segments = meta.logs.segments(log_id)
    assert segments[0].base_offset == 100
    assert all(segments[i].end_offset == segments[i + 1].base_offset for i in range(len(segments) - 1))
    assert segments[-1].end_offset == state.sealed_offset
    assert state.line_count == state.end_offset // 2
