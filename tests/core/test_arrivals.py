"""Exact arrival times (`jobtail.core.arrivals`): kept per append in the head, carried into each
segment's trailer by the seal, and answered to the microsecond wherever the bytes now are."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.engine import backends_of, new_job

from jobtail.core.arrivals import MAGIC, SegmentArrivals, decode_trailer, encode_trailer
from jobtail.core.store import LogStore
from jobtail.core.types import Arrival, IndexPolicy, TaskRef

T0 = 1_700_000_000.0


@settings(max_examples=200, deadline=None)
@given(base=st.integers(0, 2**40), steps=st.lists(st.tuples(st.integers(1, 2**24), st.integers(0, 2**34)), min_size=1,
                                                  max_size=200))
def test_a_trailer_decodes_to_what_was_encoded(base: int, steps: list[tuple[int, int]]) -> None:
    offsets, times, at, now = [], [], base, 1_700_000_000_000_000
    for size, gap in steps:
        offsets.append(at)
        times.append(now)
        at, now = at + size, now + gap
    trailer = encode_trailer(base, [Arrival(o, t) for o, t in zip(offsets, times, strict=True)])
    decoded = decode_trailer(base, trailer)
    assert list(decoded.offsets) == offsets and list(decoded.times) == times


def test_a_trailer_is_compact_and_checked() -> None:
    arrivals = [Arrival(100 * i, 1_700_000_000_000_000 + 200_000 * i) for i in range(10_000)]
    trailer = encode_trailer(0, arrivals)
    assert trailer.startswith(MAGIC)
    assert len(trailer) < 5 * len(arrivals), "a few bytes per append: varint deltas"
    for damaged in (trailer[:-1], trailer[:10], b"", b"not a trailer", trailer[:20] + b"\x00" + trailer[21:]):
        with pytest.raises(ValueError):
            decode_trailer(0, damaged)


def test_overlapping_appends_of_a_segment() -> None:
    piece = decode_trailer(10, encode_trailer(10, [Arrival(10, 1), Arrival(15, 2), Arrival(30, 3)]))
    assert isinstance(piece, SegmentArrivals)
    assert [a.offset for a in piece.overlapping(10, 11)] == [10]
    assert [a.offset for a in piece.overlapping(14, 16)] == [10, 15]
    assert [a.offset for a in piece.overlapping(15, 40)] == [15, 30]
    assert [a.offset for a in piece.overlapping(31, 40)] == [30]


def _log(store_factory: Callable[..., LogStore], **options: object) -> tuple[LogStore, TaskRef]:
    store = store_factory(seal_bytes=1 << 40, segment_bytes=300, **options)
    return store, TaskRef("times", new_job(store, "times", "exact").id, "worker-0")


def test_every_append_keeps_its_time_in_the_head_and_after_sealing(store_factory: Callable[..., LogStore]) -> None:
    store, ref = _log(store_factory, index_policy=IndexPolicy(every_bytes=10**9, every_seconds=3600.0))
    rng = random.Random(3)
    appends, offset = [], 0
    for i in range(60):  # 0.2 s apart: one sparse index entry (hourly) covers them all
        data = b"".join(b"step %d.%d\n" % (i, k) for k in range(rng.randint(1, 3)))
        at = T0 + 0.2 * i + 0.000_123
        store.append(ref, data, arrived_at=at)
        appends.append((offset, at))
        offset += len(data)

    def times() -> list[float]:
        return store.arrival_times(store.state(ref), [o for o, _ in appends])

    exact = pytest.approx([at for _, at in appends], abs=1e-6)  # to the microsecond
    assert times() == exact, "in the head"
    store.seal(ref)
    state = store.state(ref)
    assert state.head_bytes == 0 and len(backends_of(store).logs.segments(state.log_id)) > 3
    assert times() == exact, "from the segments' trailers"
    for i in (0, 1, 17, 59):  # since: the first line of the first append at or after it, exactly
        assert store.offset_at_time(state, appends[i][1]) == appends[i][0]
        assert store.offset_at_time(state, appends[i][1] - 0.000_001) == appends[i][0]
        assert store.offset_at_time(state, appends[i][1] + 0.000_001) == (appends[i + 1][0] if i < 59 else offset)
    page = store.lines(state, base_line=None, count=500, descending=False, since=appends[17][1], until=appends[20][1])
    assert page[0].offset == appends[17][0] and page[-1].offset < appends[20][0]
    assert page[-1].offset + len(page[-1].text) + 1 == appends[20][0]


def test_arrival_times_never_go_back_along_a_log(store_factory: Callable[..., LogStore]) -> None:
    store, ref = _log(store_factory)
    store.append(ref, b"late clock\n", arrived_at=T0 + 10)
    store.append(ref, b"earlier clock\n", arrived_at=T0 + 5)  # another writer's clock is behind
    assert store.arrival_times(store.state(ref), [0, 11]) == [T0 + 10, T0 + 10]


def test_retention_keeps_the_times_of_what_it_keeps(store_factory: Callable[..., LogStore]) -> None:
    now = [T0]
    store, ref = _log(store_factory, clock=lambda: now[0])
    for i in range(30):
        now[0] = T0 + 86_400 * i  # a line a day, each sealed into its own segment
        store.append(ref, b"day %02d\n" % i)
        store.seal(ref)
    dropped = store.apply_retention(10 * 86_400)
    assert [e.segments for e in dropped] == [19]  # created before now - 10 days: days 0 to 18
    state = store.state(ref)
    kept = range(19, 30)
    offsets = [7 * i for i in kept]
    assert state.start_offset == offsets[0]
    assert store.arrival_times(state, offsets) == [T0 + 86_400 * i for i in kept]
    assert store.offset_at_time(state, T0) == state.start_offset, "never before the first retained byte"
    assert store.offset_at_time(state, T0 + 86_400 * 25 - 1) == 7 * 25


def test_a_segment_without_a_trailer_falls_back_to_the_index(store_factory: Callable[..., LogStore],
                                                            tmp_path: Path) -> None:
    """Segments sealed before trailers existed (or a damaged trailer): coarse times, no error."""
    store, ref = _log(store_factory, index_policy=IndexPolicy(every_bytes=10**9, every_seconds=1.0))
    store.append(ref, b"one\n", arrived_at=T0)
    store.append(ref, b"two\n", arrived_at=T0 + 0.5)  # no index entry of its own (less than a second)
    store.append(ref, b"three\n", arrived_at=T0 + 2)
    store.seal(ref)
    (segment,) = backends_of(store).logs.segments(store.state(ref).log_id)
    blob = next((tmp_path / "blobs").rglob("*.seg"))
    blob.write_bytes(blob.read_bytes()[: segment.length])  # as old segments were: the bytes only
    fresh = store_factory()  # nothing cached
    assert fresh.arrival_times(fresh.state(ref), [0, 4, 8]) == [T0, T0, T0 + 2]
    assert b"".join(fresh.read(fresh.state(ref), 0, 100)) == b"one\ntwo\nthree\n"
