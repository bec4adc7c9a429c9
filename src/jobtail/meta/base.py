"""The metadata store interface that the storage engine depends on.

Every backend passes the same conformance suite (`tests/meta/test_conformance.py`).
All methods are synchronous and thread-safe; callers in async code run them in a thread.
"""

from __future__ import annotations

from typing import Protocol

from jobtail.core.types import (
    AppendOutcome,
    HeadChunk,
    IndexEntry,
    IndexPolicy,
    JobEvent,
    JobQuery,
    JobRecord,
    LogState,
    ReadPlan,
    Segment,
)


class MetaStore(Protocol):
    def create_job(self, job: JobRecord) -> None:
        """Store `job` and an empty task log for each of `job.tasks`, atomically.

        Raises `DuplicateJobName` when the project already has a job of that name.
        """

    def get_job(self, project_id: str, job_id: str) -> JobRecord | None:
        """The job, or None when it does not exist in *this* project."""

    def update_job(self, job: JobRecord, expected_phases: tuple[str, ...]) -> bool:
        """Store `job`'s status fields if the stored phase is one of `expected_phases`; False otherwise."""

    def jobs_in_phases(self, phases: tuple[str, ...], executor: str) -> list[JobRecord]:
        """Jobs of any project in one of `phases` that `executor` runs, oldest first."""

    def search_jobs(self, project_id: str, query: JobQuery) -> tuple[int, int, list[JobRecord]]:
        """(jobs in the project, jobs matching `query`, the requested page of matches)."""

    def add_job_event(self, job_id: str, event: JobEvent) -> None:
        """Append an event to the job's history."""

    def job_events(
        self, job_id: str, *, offset: int, limit: int, descending: bool, level: str | None = None,
        pattern: str | None = None, start: int | None = None, end: int | None = None,
    ) -> tuple[int, list[JobEvent]]:
        """(events matching the filters, the slice `[offset, offset + limit)` of them in time order)."""

    def delete_job(self, project_id: str, job_id: str) -> list[str]:
        """Delete the job and its task logs' records; return the blob keys of its segments
        (the caller deletes those blobs afterwards). Unknown jobs return []."""

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

    def job_phases(self, job_ids: list[str]) -> dict[str, str]:
        """Phases of the jobs (of any project) among `job_ids` that exist (unknown ids are left out)."""

    def append(
        self, log_id: int, expected_end: int, data: bytes, now: float, policy: IndexPolicy
    ) -> AppendOutcome:
        """Append `data` as one head chunk if, and only if, the log ends at `expected_end`.

        Atomic and durable on return. In the same transaction, adds an index entry at
        `expected_end` when `policy` wants one. Returns the end offset after the call
        (unchanged, with `stored=False`, on a mismatch).
        """

    def read_plan(self, log_id: int, start: int, end: int) -> ReadPlan:
        """Segments and head chunks that overlap `[start, end)`, from one consistent snapshot."""

    def head_chunks(self, log_id: int, start: int, max_bytes: int) -> list[HeadChunk]:
        """Head chunks from offset `start` on, in order, stopping once `max_bytes` are collected
        (at least one chunk when any exists). `start` must be a chunk boundary."""

    def record_segment(self, log_id: int, segment: Segment) -> bool:
        """Seal: if the log's sealed offset is still `segment.base_offset`, record the segment,
        drop the head chunks it covers and advance the sealed offset, atomically. Returns False
        (and changes nothing) when another sealer got there first."""

    def segments(self, log_id: int) -> list[Segment]:
        """All recorded segments of the log, in offset order."""

    def segment_keys(self, prefix: str) -> set[str]:
        """Blob keys of all recorded segments whose key starts with `prefix`."""

    def logs_to_seal(self, idle_before: float, min_head_bytes: int) -> list[int]:
        """Ids of logs with head bytes whose newest append is older than `idle_before`, or whose
        head holds at least `min_head_bytes`."""

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

    def check_writable(self) -> None:
        """Raise StorageNotWritable unless the database accepts a write transaction (one that
        changes nothing): for a start-up check. Every method raises StorageFull when the
        database has no space left, and StorageNotWritable when it refuses writes."""

    def checkpoint(self) -> None:
        """Fold the database's write-ahead log into its main file, without blocking writers, if
        the backend leaves that to the caller (SQLite here); otherwise do nothing. Called after
        seals and periodically by the server."""

    def close(self) -> None:
        """Release connections. Idempotent."""
