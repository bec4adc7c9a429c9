"""The log side of the metadata interface: where each task log stands, its head, its sealed
segments, the sparse line and time index, and retention.

Two narrow protocols, each with its conformance suite (`tests/meta/test_log_heads.py`,
`tests/meta/test_log_segments.py`), implemented together over one database by
`jobtail.meta.sql_logs` (SQLite, PostgreSQL):

- `LogHeads`: a task log's offsets and its **head**, the acknowledged bytes not yet sealed, each
  append with its arrival time. `jobtail.meta.file_head` (SQLite's default: the bytes in an
  append-only file per task log, the database keeping their offsets) implements it too and
  passes the same suite.
- `LogSegments`: the sealed **segments** (their blobs hold the bytes), the sparse **index**
  (line number ↔ offset, and a coarse arrival time per entry) and **retention**.

The engine (`jobtail.core.store.LogStore`) is their only caller. It reads a range by asking the
head first and the segments second, each from its own snapshot: a byte that has left the head
by then was sealed first, so the second answer covers it. All methods are synchronous and
thread-safe; every method raises StorageFull when the database has no space left and
StorageNotWritable when it refuses writes.
"""

from __future__ import annotations

from typing import Protocol

from jobtail.core.types import AppendOutcome, Arrival, HeadChunk, IndexEntry, IndexPolicy, LogState, Segment


class LogHeads(Protocol):
    def log_state(self, project_id: str, job_id: str, task_id: str) -> LogState | None:
        """The task log's state, or None when the job (in this project) or the task is unknown."""

    def log_state_by_id(self, log_id: int) -> LogState | None:
        """The task log's state by its internal id."""

    def log_owner(self, log_id: int) -> tuple[str, str] | None:
        """The (job_id, task_id) a task log belongs to."""

    def log_ends(self, log_ids: list[int]) -> dict[int, int]:
        """End offsets of the task logs among `log_ids` that exist (unknown ids are left out).

        A single query for any realistic number of ids: the follow poller asks this for every
        followed log of the process at once, several times a second.
        """

    def append(
        self, log_id: int, expected_end: int, data: bytes, arrived_us: int, policy: IndexPolicy
    ) -> AppendOutcome:
        """Append `data` as one head chunk if, and only if, the log ends at `expected_end`.

        Atomic and durable on return. The chunk's arrival time is `arrived_us` (epoch
        microseconds), or the log's previous arrival time if that is later, so arrival times
        never decrease along a log. In the same transaction, adds the index entries `policy`
        wants. Returns the end offset after the call (unchanged, with `stored=False`, on a
        mismatch); raises JobNotFound for an unknown log.
        """

    def head_chunks(self, log_id: int, start: int, end: int) -> list[HeadChunk]:
        """The head chunks overlapping `[start, end)`, in offset order, from one snapshot."""

    def head_to_seal(self, log_id: int, start: int, max_bytes: int) -> list[HeadChunk]:
        """Head chunks from offset `start` on, in order, stopping once `max_bytes` are collected
        (at least one chunk when any exists). `start` must be a chunk boundary."""

    def head_as_segment(self, log_id: int, start: int, max_bytes: int) -> tuple[str, int] | None:
        """For a seal without a copy: a local file `(path, end)` that holds exactly the head's
        bytes `[start, end)` (`start` a chunk boundary, `end` a later one, at most `max_bytes`
        on), followed by their arrival trailer (`jobtail.core.arrivals.encode_trailer`), durable,
        and that nothing changes again; None when the head has no such file (a database head
        never has; the caller then seals from `head_to_seal`). Never waits for appends."""

    def head_arrivals(self, log_id: int, start: int, end: int) -> list[Arrival]:
        """(offset, arrival) of the head chunks overlapping `[start, end)`, in offset order,
        without their bytes."""

    def logs_to_seal(self, idle_before: float, min_head_bytes: int) -> list[int]:
        """Ids of logs with head bytes whose newest append is older than `idle_before`, or whose
        head holds at least `min_head_bytes`."""

    def checkpoint(self) -> None:
        """Fold the database's write-ahead log into its main file, without blocking writers, if
        the backend leaves that to the caller (SQLite); otherwise do nothing. The engine calls
        it after seals and periodically."""


class LogSegments(Protocol):
    def record_segment(self, log_id: int, segment: Segment) -> bool:
        """Seal: if the log's sealed offset is still `segment.base_offset`, record the segment,
        release the head chunks it covers and advance the sealed offset, atomically. Returns
        False (and changes nothing) when another sealer got there first."""

    def segments_overlapping(self, log_id: int, start: int, end: int) -> list[Segment]:
        """The recorded segments overlapping `[start, end)`, in offset order, from one snapshot."""

    def segments(self, log_id: int) -> list[Segment]:
        """All recorded segments of the log, in offset order."""

    def segment_keys(self, prefix: str) -> set[str]:
        """Blob keys of all recorded segments whose key starts with `prefix` (literally: case matters)."""

    def logs_with_segments_before(self, created_before: float) -> list[int]:
        """Ids of logs with at least one recorded segment whose `created_at` is older than
        `created_before` (retention's candidates), in id order."""

    def drop_segments(self, log_id: int, expected_start: int, first_entry: IndexEntry) -> list[str]:
        """Retention: drop the log's oldest segments up to offset `first_entry.offset`.

        If, and only if, the log's start offset is still `expected_start`, the new start
        `first_entry.offset` is greater, not past the sealed offset, and the end of a recorded
        segment, then atomically: set the start offset to it, delete the segment records that end
        at or below it, delete the index entries below it, and make sure an index entry exists
        exactly at it (`first_entry`, unless one is already there), so that line numbers stay
        absolute: `first_entry.line` must be the number of newlines before the new start.
        Returns the blob keys of the deleted segments (the caller deletes those blobs after the
        commit; a crash in between leaves orphans for the sweep); [] when refused, changing nothing.
        """

    def index_floor_line(self, log_id: int, line: int) -> IndexEntry | None:
        """The last index entry with `entry.line <= line`."""

    def index_floor_offset(self, log_id: int, offset: int) -> IndexEntry | None:
        """The last index entry with `entry.offset <= offset`."""

    def index_ceil_time(self, log_id: int, at: float) -> IndexEntry | None:
        """The first index entry (by offset) with `entry.appended_at >= at`."""

    def index_entries(self, log_id: int, start: int, end: int) -> list[IndexEntry]:
        """Index entries with `start <= offset < end`, in offset order."""


class LogRecords(LogHeads, LogSegments, Protocol):
    """Both halves, as the engine takes them (one backend over one database)."""
