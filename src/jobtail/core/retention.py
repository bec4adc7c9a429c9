"""Retention: drop whole sealed segments by age and advance the log's start offset.

For each task log with segments older than the cutoff, the oldest run of such segments (from the
start offset on) is dropped in one metadata transaction (`LogSegments.drop_segments`): the start
offset moves to the end of the last dropped segment, the segment records and the index entries
below it go, and an index entry exactly at the new start keeps the number of newlines before it,
so line numbers stay absolute. The blobs are deleted after the commit; a crash in between
leaves orphan blobs that the orphan sweep removes. The head is never touched: only recorded
segments, all below the sealed offset, are dropped. A log whose every byte is dropped answers
`LogCleared` (ModelArts.2819).
"""

from __future__ import annotations

from dataclasses import dataclass

from jobtail.core.arrivals import ArrivalIndex
from jobtail.core.blob_store import BlobStore
from jobtail.core.errors import StorageError
from jobtail.core.lines import LineFinder
from jobtail.core.log_records import LogRecords
from jobtail.core.types import IndexEntry

DAY_SECONDS = 86_400.0


@dataclass(frozen=True, slots=True)
class Expired:
    """What retention dropped (or, in a dry run, would drop) from one task log."""

    log_id: int
    job_id: str
    task_id: str
    segments: int
    bytes: int
    start_offset: int  # the new start offset
    end_offset: int  # the log's end when retention looked: equal to start_offset means cleared


@dataclass(frozen=True, slots=True)
class RetentionParts:
    """What retention works with: the log records, the segment blobs, line and arrival lookups."""

    records: LogRecords
    blobs: BlobStore
    lines: LineFinder
    arrivals: ArrivalIndex


def apply_retention(parts: RetentionParts, created_before: float, *, dry_run: bool = False) -> list[Expired]:
    """Drop, in every task log, the oldest segments created before `created_before`; returns what
    was dropped per log. With `dry_run`, change nothing and report what would be dropped."""
    done: list[Expired] = []
    for log_id in parts.records.logs_with_segments_before(created_before):
        expired = _expire_log(parts, log_id, created_before, dry_run)
        if expired is not None:
            done.append(expired)
    return done


def _expire_log(parts: RetentionParts, log_id: int, created_before: float, dry_run: bool) -> Expired | None:
    meta = parts.records
    state = meta.log_state_by_id(log_id)
    owner = meta.log_owner(log_id)
    if state is None or owner is None:
        return None
    old = []
    for segment in meta.segments(log_id):
        if segment.end_offset <= state.start_offset:
            continue
        if segment.created_at >= created_before or segment.end_offset > state.sealed_offset:
            break  # oldest first: a young segment keeps everything after it
        old.append(segment)
    if not old or old[0].base_offset != state.start_offset:
        return None
    new_start = old[-1].end_offset
    expired = Expired(log_id, owner[0], owner[1], len(old), new_start - state.start_offset, new_start, state.end_offset)
    if dry_run:
        return expired
    # Newlines before the new start, from the index floor plus a scan of at most one index step
    # of still-present segment bytes; the arrival time of the append there, from its trailer.
    try:
        newlines = parts.lines.line_of(state, new_start) - 1
        arrived = parts.arrivals.times_of(state, [new_start])[0] if new_start < state.end_offset else 0.0
    except StorageError:
        now = meta.log_state_by_id(log_id)
        if now is None or now.start_offset != state.start_offset:
            return None  # another retention run (or a job deletion) dropped these bytes meanwhile
        raise
    if new_start >= state.end_offset:  # nothing after it: the newest entry's time is as good as any
        newest = meta.index_floor_offset(log_id, new_start)
        arrived = newest.appended_at if newest is not None else 0.0
    keys = meta.drop_segments(log_id, state.start_offset, IndexEntry(new_start, newlines, arrived))
    if not keys:
        return None  # another retention run (or replica) moved the start first
    for key in keys:
        parts.blobs.delete(key)
    return expired
