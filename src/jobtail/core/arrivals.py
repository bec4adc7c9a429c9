"""Exact arrival times: when each append's bytes arrived, at any log size.

The head keeps each append's arrival time (epoch microseconds) beside its bytes
(`LogHeads.append`). Sealing carries them into the segment blob as a compact **arrival
trailer** after the segment's bytes, so a segment holds its own times whatever backend stores
it, retention drops them with it, and no database row per append is kept once sealed:

    bytes [0, length)         the log bytes (a segment record's `length`)
    trailer                   b"JTA\\x01", varint n, n varint offset deltas (the first from the
                              segment's base, so 0), n varint time deltas (the first absolute,
                              epoch µs), CRC-32 of all of it (4 bytes, little-endian)

One ranged read from `length` fetches it (S3 included). Decoded trailers are immutable and kept
in a bounded LRU (`ArrivalIndex`). A segment sealed without a trailer (or with a damaged one)
falls back to the sparse index's coarse times, which is what every segment had before. Another
kind of head (an append-only file per task, say) keeps the same (offset, arrival) pairs
(`LogHeads.head_arrivals`) and writes the trailer after the bytes when its file becomes the
segment, so nothing here changes.

Times never decrease along a log (the head clamps them), so "the first append that arrived at
or after T" is found by bisection; the sparse index's time column narrows which appends to look
at to at most one index step (`IndexPolicy`).
"""

from __future__ import annotations

import bisect
import struct
import threading
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from itertools import accumulate, pairwise

from jobtail.core.blob_store import BlobNotFound, BlobStore
from jobtail.core.log_records import LogRecords
from jobtail.core.types import Arrival, LogState, Segment

MAGIC = b"JTA\x01"
_CRC = struct.Struct("<I")
_FIRST_READ = 64 * 1024  # a trailer this small (about 15k appends) comes in one ranged read
CACHE_BYTES = 32 * 1024 * 1024  # decoded trailers kept per process


def _varints(values: Sequence[int], out: bytearray) -> None:
    for value in values:
        while value >= 0x80:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)


def _read_varints(data: bytes, pos: int, count: int) -> tuple[list[int], int]:
    values: list[int] = []
    value = shift = 0
    size = len(data)
    while len(values) < count:
        if pos >= size:
            raise ValueError("arrival trailer ends early")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
        else:
            values.append(value)
            value = shift = 0
    return values, pos


def encode_trailer(base_offset: int, arrivals: Sequence[Arrival]) -> bytes:
    """The trailer of a segment starting at `base_offset` whose appends are `arrivals` (in offset
    order, the first at `base_offset`, times not decreasing)."""
    out = bytearray(MAGIC)
    _varints([len(arrivals)], out)
    offsets = [a.offset for a in arrivals]
    times = [a.arrived_us for a in arrivals]
    _varints([b - a for a, b in zip([base_offset, *offsets], offsets, strict=False)], out)
    _varints([times[0], *(b - a for a, b in pairwise(times))] if times else [], out)
    return bytes(out) + _CRC.pack(zlib.crc32(out))


class SegmentArrivals:
    """The decoded trailer of one segment: its appends' offsets and arrival times (µs)."""

    __slots__ = ("offsets", "times")

    def __init__(self, offsets: array[int], times: array[int]) -> None:
        self.offsets = offsets
        self.times = times

    @property
    def size(self) -> int:
        """Memory it takes, about."""
        return 16 * len(self.offsets) + 64

    def overlapping(self, start: int, end: int) -> list[Arrival]:
        """The appends overlapping `[start, end)`: the one holding `start`, and those after it."""
        first = max(0, bisect.bisect_right(self.offsets, start) - 1)
        last = bisect.bisect_left(self.offsets, end)
        return [Arrival(self.offsets[i], self.times[i]) for i in range(first, last)]


def decode_trailer(base_offset: int, data: bytes) -> SegmentArrivals:
    """Decode a trailer read from just after a segment's bytes; ValueError when it is none."""
    if len(data) < len(MAGIC) + 1 + _CRC.size or not data.startswith(MAGIC):
        raise ValueError("no arrival trailer")
    body, crc = data[: -_CRC.size], _CRC.unpack(data[-_CRC.size :])[0]
    if zlib.crc32(body) != crc:
        raise ValueError("arrival trailer checksum mismatch")
    (count,), pos = _read_varints(body, len(MAGIC), 1)
    deltas, pos = _read_varints(body, pos, 2 * count)
    if pos != len(body):
        raise ValueError("arrival trailer has trailing bytes")
    offsets = array("q", accumulate(deltas[:count], initial=base_offset))
    offsets.pop(0)
    return SegmentArrivals(offsets, array("q", accumulate(deltas[count:])))


def to_microseconds(at: float) -> int:
    """Epoch seconds → whole epoch microseconds, as arrival times are kept (to the nearest)."""
    return round(at * 1_000_000)


class ArrivalIndex:
    """Arrival times of any byte range of a task log, from the head and the segments' trailers.

    Thread-safe. Trailers are read once and kept (decoded) in an LRU of about `cache_bytes`.
    """

    def __init__(self, records: LogRecords, blobs: BlobStore, cache_bytes: int = CACHE_BYTES) -> None:
        self._records = records
        self._blobs = blobs
        self._cache_bytes = cache_bytes
        self._cache: OrderedDict[str, SegmentArrivals] = OrderedDict()
        self._cached = 0
        self._lock = threading.Lock()

    def arrivals(self, state: LogState, start: int, end: int) -> list[Arrival]:
        """The appends overlapping `[start, end)` (clipped to the log as of `state`), in offset order."""
        start, end = max(start, state.start_offset), min(end, state.end_offset)
        if start >= end:
            return []
        # The head first, then the segments for what precedes it: a chunk sealed in between is
        # in a segment by the time the second question is asked (see jobtail.core.log_records).
        head = self._records.head_arrivals(state.log_id, start, end)
        sealed_end = head[0].offset if head else end
        found: list[Arrival] = []
        if start < sealed_end:
            for segment in self._records.segments_overlapping(state.log_id, start, sealed_end):
                piece = self._of_segment(state.log_id, segment)
                found.extend(piece.overlapping(max(start, segment.base_offset), min(sealed_end, segment.end_offset)))
        return found + head

    def times_of(self, state: LogState, offsets: list[int]) -> list[float]:
        """For each offset (ascending, inside the log), when its byte arrived: epoch seconds."""
        if not offsets:
            return []
        arrivals = self.arrivals(state, offsets[0], offsets[-1] + 1)
        starts = [a.offset for a in arrivals]
        times = []
        for offset in offsets:
            i = bisect.bisect_right(starts, offset) - 1
            times.append(arrivals[i].arrived_us / 1_000_000 if i >= 0 else 0.0)
        return times

    def offset_at_time(self, state: LogState, at: float) -> int:
        """Where the first append that arrived at or after `at` (epoch seconds) begins, or the end
        offset when none did; never before the first retained byte."""
        wanted = to_microseconds(at)
        log_id = state.log_id
        ceil = self._records.index_ceil_time(log_id, wanted / 1_000_000)
        if ceil is not None and ceil.offset >= state.end_offset:
            ceil = None
        # The index entry before `ceil` arrived before `at`, so the append we look for starts
        # after it: at most one index step of appends to look at.
        floor_at = (ceil.offset - 1) if ceil is not None else state.end_offset
        floor = self._records.index_floor_offset(log_id, floor_at) if floor_at >= 0 else None
        low = max(state.start_offset, floor.offset if floor is not None else 0)
        high = ceil.offset + 1 if ceil is not None else state.end_offset
        for arrival in self.arrivals(state, low, high):
            if arrival.arrived_us >= wanted:
                return max(arrival.offset, state.start_offset)
        return ceil.offset if ceil is not None else state.end_offset

    def _of_segment(self, log_id: int, segment: Segment) -> SegmentArrivals:
        with self._lock:
            cached = self._cache.get(segment.blob_key)
            if cached is not None:
                self._cache.move_to_end(segment.blob_key)
                return cached
        try:
            decoded = decode_trailer(segment.base_offset, self._read_trailer(segment))
        except (BlobNotFound, ValueError):
            decoded = self._from_index(log_id, segment)  # sealed without a trailer: coarse times
        with self._lock:
            if segment.blob_key not in self._cache:
                self._cache[segment.blob_key] = decoded
                self._cached += decoded.size
                while self._cached > self._cache_bytes and len(self._cache) > 1:
                    _, evicted = self._cache.popitem(last=False)
                    self._cached -= evicted.size
        return decoded

    def _read_trailer(self, segment: Segment) -> bytes:
        """Everything after the segment's bytes, in ranged reads that grow until one comes back short."""
        pieces, at, want = [], segment.length, _FIRST_READ
        while True:
            piece = self._blobs.read(segment.blob_key, at, at + want)
            pieces.append(piece)
            if len(piece) < want:
                return b"".join(pieces)
            at, want = at + want, want * 4

    def _from_index(self, log_id: int, segment: Segment) -> SegmentArrivals:
        """A segment without a trailer: the sparse index's entries stand for its appends."""
        floor = self._records.index_floor_offset(log_id, segment.base_offset)
        entries = self._records.index_entries(log_id, segment.base_offset + 1, segment.end_offset)
        offsets, times = array("q", [segment.base_offset]), array("q", [to_microseconds(floor.appended_at) if floor else 0])
        for entry in entries:
            offsets.append(entry.offset)
            times.append(max(times[-1], to_microseconds(entry.appended_at)))
        return SegmentArrivals(offsets, times)
