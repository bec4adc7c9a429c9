"""Helpers of the metadata conformance suites (`test_job_records.py`, `test_log_heads.py`,
`test_log_segments.py`): a database's two record stores, and the engine's ways of using them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple

from jobtail.core.types import HeadChunk, IndexPolicy, JobRecord, Segment
from jobtail.meta.database import SqlDatabase, open_database
from jobtail.meta.sql_jobs import SqlJobRecords
from jobtail.meta.sql_logs import SqlLogRecords

EVERY_APPEND = IndexPolicy(every_bytes=10**12, every_seconds=0.0)
NEVER_AFTER_FIRST = IndexPolicy(every_bytes=10**12, every_seconds=1e12)


@dataclass
class Meta:
    """One database's job records and log records."""

    database: SqlDatabase

    @property
    def jobs(self) -> SqlJobRecords:
        return self.database.jobs

    @property
    def logs(self) -> SqlLogRecords:
        return self.database.logs

    def close(self) -> None:
        self.database.close()


def open_meta(url: str) -> Meta:
    return Meta(open_database(url))


class ReadPlan(NamedTuple):
    """What the engine reads a range from: segments and head chunks."""

    segments: tuple[Segment, ...]
    head: tuple[HeadChunk, ...]


def read_plan(meta: Meta, log_id: int, start: int, end: int) -> ReadPlan:
    """As the engine's reader asks: the head first, then the segments before the head's first chunk."""
    head = meta.logs.head_chunks(log_id, start, end)
    sealed_end = head[0].base_offset if head else end
    segments = meta.logs.segments_overlapping(log_id, start, sealed_end) if start < sealed_end else []
    return ReadPlan(tuple(segments), tuple(head))


def us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def append(meta: Meta, log_id: int, expected_end: int, data: bytes, now: float, policy: IndexPolicy) -> Any:
    """`LogHeads.append` with the arrival time in epoch seconds."""
    return meta.logs.append(log_id, expected_end, data, us(now), policy)


def pieces(chunks: Any) -> list[tuple[int, bytes]]:
    return [(c.base_offset, c.data) for c in chunks]


def make_job(
    project: str = "proj-a",
    name: str | None = None,
    tasks: tuple[str, ...] = ("worker-0",),
    job_id: str | None = None,
    document: dict[str, Any] | None = None,
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


def new_log(meta: Meta, project: str = "proj-a", task: str = "worker-0") -> tuple[JobRecord, int]:
    """Create a one-task job and return it with its log id."""
    job = make_job(project=project, tasks=(task,))
    meta.jobs.create_job(job)
    state = meta.logs.log_state(project, job.id, task)
    assert state is not None
    return job, state.log_id


def log_id_of(meta: Meta, job: JobRecord, task: str) -> int:
    state = meta.logs.log_state(job.project_id, job.id, task)
    assert state is not None, f"no log for {job.id}/{task}"
    return state.log_id


def append_all(
    meta: Meta, log_id: int, chunks: list[bytes], now: float = 1000.0, policy: IndexPolicy = EVERY_APPEND
) -> int:
    """Append `chunks` one by one at the log's end (asserting each is stored), the i-th at
    `now + i`; return the end."""
    state = meta.logs.log_state_by_id(log_id)
    assert state is not None
    end = state.end_offset
    for i, chunk in enumerate(chunks):
        outcome = append(meta, log_id, end, chunk, now + i, policy)
        assert outcome.stored, f"append of chunk {i} at {end} refused: {outcome}"
        assert outcome.end_offset == end + len(chunk)
        end = outcome.end_offset
    return int(end)


def seal(meta: Meta, log_id: int, max_bytes: int, key: str, segment_data: dict[str, bytes]) -> Segment:
    """Seal like the engine does: head chunks from the sealed offset into one recorded segment."""
    state = meta.logs.log_state_by_id(log_id)
    assert state is not None
    chunks = meta.logs.head_to_seal(log_id, state.sealed_offset, max_bytes)
    assert chunks, "nothing to seal"
    data = b"".join(c.data for c in chunks)
    segment = Segment(chunks[0].base_offset, len(data), key, created_at=2000.5)
    segment_data[key] = data
    assert meta.logs.record_segment(log_id, segment)
    return segment


def plan_bytes(plan: ReadPlan, start: int, end: int, segment_data: dict[str, bytes]) -> bytes:
    """The bytes `[start, end)` assembled from `plan`; fails on a gap or on pieces out of order."""
    for group in (plan.segments, plan.head):
        bases = [p.base_offset for p in group]
        assert bases == sorted(bases), f"pieces not in offset order: {bases}"
    ordered: list[Segment | HeadChunk] = sorted([*plan.segments, *plan.head], key=lambda p: p.base_offset)
    out = bytearray()
    pos = start
    for piece in ordered:
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
