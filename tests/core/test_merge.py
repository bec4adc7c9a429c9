"""Several task logs merged by arrival: pages and positions equal a sort of every line by arrival."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.engine import new_job

from jobtail.core.merge import MergedLog
from jobtail.core.store import LogStore
from jobtail.core.types import IndexPolicy, TaskRef

_names = (f"merge-{i}" for i in itertools.count())
TASKS = 3


def _merged_reference(appends: list[tuple[int, float, bytes]]) -> list[tuple[str, int, bytes]]:
    """(task, line number, text) of every line, sorted by (arrival of its last byte, task, number),
    where a byte arrives with the append that wrote it."""
    logs: list[bytearray] = [bytearray() for _ in range(TASKS)]
    arrival: list[list[float]] = [[] for _ in range(TASKS)]  # per byte
    for task, at, data in appends:
        logs[task] += data
        arrival[task] += [at] * len(data)
    keyed = []
    for task, log in enumerate(logs):
        start = 0
        for number, piece in enumerate(bytes(log).split(b"\n"), start=1):
            end = start + len(piece)  # the newline, or the log's end
            if end == len(log) and not piece:
                break
            last = min(end, len(log) - 1)
            keyed.append(((arrival[task][last], task, number), (f"worker-{task}", number, piece)))
            start = end + 1
    return [value for _, value in sorted(keyed)]


def _rows(page_lines: list) -> list[tuple[str, int, bytes]]:  # type: ignore[type-arg]
    return [(m.task, m.line.number, m.line.text) for m in page_lines]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(appends=st.lists(st.tuples(st.integers(0, TASKS - 1), st.integers(0, 3),
                                  st.sampled_from([b"a\n", b"bb", b"\n", b"c\nd\n", b"e\nf"])), max_size=25),
       count=st.integers(1, 4))
def test_pages_and_positions_follow_arrival_order(store_factory: Callable[..., LogStore],
                                                  appends: list[tuple[int, int, bytes]], count: int) -> None:
    now = [1000.0]
    store = store_factory(seal_bytes=7, segment_bytes=16, clock=lambda: now[0],
                          index_policy=IndexPolicy(every_bytes=10**9, every_seconds=0.0))  # an entry per append
    job = new_job(store, "merge", next(_names), node_count=TASKS)
    refs = [TaskRef("merge", job.id, f"worker-{i}") for i in range(TASKS)]
    timed = []
    for task, step, data in appends:
        now[0] += step  # several appends may share one instant
        store.append(refs[task], data)
        timed.append((task, now[0], data))
    expected = _merged_reference(timed)
    merged = MergedLog(store, refs)
    assert merged.total == len(expected)

    forward, cursor = [], merged.first_cursor
    while True:
        page = merged.page_after(cursor, count)
        assert page.start == cursor and merged.position(page.end) == merged.position(cursor) + len(page.lines)
        if not page.lines:
            break
        forward += _rows(page.lines)
        cursor = page.end
    assert forward == expected and cursor == merged.last_cursor

    backward, cursor = [], merged.last_cursor
    while (page := merged.page_before(cursor, count)).lines:
        assert page.end == cursor
        backward = _rows(page.lines) + backward
        cursor = page.start
    assert backward == expected and cursor == merged.first_cursor

    for position in range(len(expected) + 1):
        at = merged.cursor_at(position)
        assert merged.position(at) == position
        assert _rows(merged.page_after(at, count).lines) == expected[position : position + count]
    store.close()


def test_empty_tasks_and_collapsed_lines(store_factory: Callable[..., LogStore]) -> None:
    store = store_factory()
    job = new_job(store, "merge", next(_names), node_count=2)
    refs = [TaskRef("merge", job.id, f"worker-{i}") for i in range(2)]
    store.append(refs[1], b"10%\r100%\nnext\n")
    merged = MergedLog(store, refs, collapse_cr=True)
    assert merged.total == 2 and merged.first_cursor == (0, 0) and merged.last_cursor == (0, 2)
    assert [s.last_arrival is None for s in merged.spans] == [True, False]
    page = merged.page_before(merged.last_cursor, 10)
    assert _rows(page.lines) == [("worker-1", 1, b"100%"), ("worker-1", 2, b"next")]
    assert page.start == (0, 0) and merged.cursor_at(1) == (0, 1)


def test_complete_only_leaves_a_line_out_until_its_newline(store_factory: Callable[..., LogStore]) -> None:
    store = store_factory()
    job = new_job(store, "merge", next(_names), node_count=2)
    refs = [TaskRef("merge", job.id, f"worker-{i}") for i in range(2)]
    store.append(refs[0], b"done\nprogress 50%")
    store.append(refs[1], b"other\n")
    merged = MergedLog(store, refs, complete_only=True)
    assert merged.total == 2 and merged.last_cursor == (1, 1)
    assert _rows(merged.page_after(merged.first_cursor, 10).lines) == [("worker-0", 1, b"done"), ("worker-1", 1, b"other")]
    assert _rows(merged.page_before(merged.last_cursor, 10).lines)[0] == ("worker-0", 1, b"done")
    store.append(refs[0], b"\rprogress 100%\n")
    later = MergedLog(store, refs, complete_only=True)
    assert _rows(later.page_after((1, 1), 10).lines) == [("worker-0", 2, b"progress 50%\rprogress 100%")]
    assert MergedLog(store, refs).total == 3
