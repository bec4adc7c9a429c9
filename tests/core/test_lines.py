"""Line pages over any history of appends and seals equal the lines of the appended bytes."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import reference_lines, reference_page
from support.engine import new_job

from jobtail.core import lines as lines_module
from jobtail.core.errors import LogNotGenerated
from jobtail.core.store import LogStore
from jobtail.core.types import IndexPolicy, TaskRef

_names = (f"lines-{i}" for i in itertools.count())
_CHUNK = st.lists(st.sampled_from([b"a", b"\n", b"xyz", b"\xe6\x90\x8d", b"\r", b"\n\n", b"long" * 20]),
                  max_size=30).map(b"".join)


def _new_log(store_factory: Callable[..., LogStore], **options: object) -> tuple[LogStore, TaskRef]:
    store = store_factory(seal_bytes=53, segment_bytes=120, index_policy=IndexPolicy(every_bytes=17, every_seconds=1e9),
                          **options)
    job = new_job(store, "lines", next(_names))
    return store, TaskRef("lines", job.id, "worker-0")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(_CHUNK, min_size=1, max_size=20), seal_every=st.integers(1, 5), data=st.data())
def test_pages_match_reference(store_factory: Callable[..., LogStore], chunks: list[bytes], seal_every: int,
                               data: st.DataObject) -> None:
    store, ref = _new_log(store_factory)
    log = b""
    for i, chunk in enumerate(chunks):
        if chunk:
            store.append(ref, chunk)
            log += chunk
        if i % seal_every == 0:
            store.seal(ref)
    if not log:
        with pytest.raises(LogNotGenerated):
            store.lines(store.state(ref), base_line=None, count=5, descending=True)
        store.close()
        return
    total = len(reference_lines(log))
    for _ in range(6):
        base = data.draw(st.one_of(st.none(), st.integers(0, total + 2)))
        count = data.draw(st.integers(1, 8))
        descending = data.draw(st.booleans())
        page = store.lines(store.state(ref), base_line=base, count=count, descending=descending)
        got = [(line.number, line.text) for line in page]
        assert got == reference_page(log, base, count, descending)
    store.close()


def test_giant_lines_are_cut_and_skipped_through_the_index(store_factory: Callable[..., LogStore],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lines_module, "MAX_LINE_BYTES", 10)
    store, ref = _new_log(store_factory)
    log = b"short\n" + b"G" * 500 + b"\nafter\n" + b"H" * 11
    for i in range(0, len(log), 37):
        store.append(ref, log[i : i + 37])
    page = store.lines(store.state(ref), base_line=None, count=10, descending=False)
    assert [(line.number, line.text, line.truncated) for line in page] == [
        (1, b"short", False), (2, b"G" * 10, True), (3, b"after", False), (4, b"H" * 10, True)]
    assert [line.offset for line in page] == [0, 6, 507, 513]


def test_arrival_times_and_since(store_factory: Callable[..., LogStore]) -> None:
    clock = iter(float(t) for t in range(1005, 2000, 5))
    store = store_factory(index_policy=IndexPolicy(every_bytes=10**9, every_seconds=1.0), clock=lambda: next(clock))
    ref = TaskRef("lines", new_job(store, "lines", "times").id, "worker-0")
    for text in (b"one\ntwo\n", b"three\n", b"four\nfive"):  # appended at 1005, 1010, 1015
        store.append(ref, text)
    state = store.state(ref)
    page = store.lines(state, base_line=None, count=10, descending=False)
    assert store.arrival_times(state, [line.offset for line in page]) == [1005.0, 1005.0, 1010.0, 1015.0, 1015.0]
    assert store.line_at_time(store.state(ref), 0.0) == 1
    assert store.line_at_time(store.state(ref), 1006.0) == 3
    assert store.line_at_time(store.state(ref), 1015.0) == 4
    assert store.line_at_time(store.state(ref), 1016.0) == 6


def test_collapse_cr_shows_each_line_as_a_terminal_would(store_factory: Callable[..., LogStore],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lines_module, "MAX_LINE_BYTES", 40)
    store, ref = _new_log(store_factory)
    bar = b"".join(b"\r%3d%%|%-10s|" % (i, b"#" * (i // 10)) for i in range(0, 101, 5))  # 357 bytes, no newline
    log = b"epoch 1\n" + bar + b"\n\x1b[31mred\x1b[0m\r\nbad \xff\rok\n" + bar
    for i in range(0, len(log), 23):
        store.append(ref, log[i : i + 23])
    raw = store.lines(store.state(ref), base_line=None, count=10, descending=False)
    shown = store.lines(store.state(ref), base_line=None, count=10, descending=False, collapse_cr=True)
    assert [line.number for line in shown] == [line.number for line in raw] == [1, 2, 3, 4, 5]
    assert [line.text for line in shown] == [b"epoch 1", b"100%|##########|", b"\x1b[31mred\x1b[0m",
                                            b"okd \xef\xbf\xbd", b"100%|##########|"]
    # A line cut at MAX_LINE_BYTES: its head as stored, its last redraw when collapsed.
    assert raw[1].truncated and raw[1].text == bar[:40]
    assert shown[1].truncated and shown[4].truncated
    newest = store.lines(store.state(ref), base_line=None, count=2, descending=True, collapse_cr=True)
    assert [(line.number, line.text) for line in newest] == [(5, b"100%|##########|"), (4, b"okd \xef\xbf\xbd")]
