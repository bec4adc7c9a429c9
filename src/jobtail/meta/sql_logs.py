"""The log side of the metadata store (`jobtail.core.log_records`) on SQLAlchemy Core: task log
offsets, the head (one row per append), segment records, the sparse index and retention.

One implementation for every SQL backend; they differ only in how their engines are made
(`jobtail.meta.sqlite`, `jobtail.meta.postgres`): a writer engine whose transactions serialise
appends and seals per task log, and a reader engine whose transactions each see one snapshot.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from sqlalchemy import Connection, Engine, Row, bindparam, delete, event, func, insert, select, update
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.sql.elements import BindParameter

from jobtail.core.errors import JobNotFound, StorageFull, StorageNotWritable
from jobtail.core.types import AppendOutcome, Arrival, HeadChunk, IndexEntry, IndexPolicy, LogState, Segment
from jobtail.meta.schema import head_chunks, index_entries, jobs, segments, task_logs

_STATE_COLUMNS = (
    task_logs.c.id,
    task_logs.c.start_offset,
    task_logs.c.sealed_offset,
    task_logs.c.end_offset,
    task_logs.c.line_count,
    task_logs.c.last_arrived_us,
)


# Built once: on the preview's hot path, building the statement cost more than running it.
_LOG_STATE = (
    select(*_STATE_COLUMNS)
    .join(jobs, jobs.c.id == task_logs.c.job_id)
    .where(
        jobs.c.id == bindparam("job_id"),
        jobs.c.project_id == bindparam("project_id"),
        task_logs.c.task_id == bindparam("task_id"),
    )
)


# The follow poller's query, once per tick for every followed log of the process.
_LOG_ENDS = select(task_logs.c.id, task_logs.c.end_offset).where(task_logs.c.id.in_(bindparam("ids", expanding=True)))
IDS_PER_QUERY = 10_000  # far below SQLite's and PostgreSQL's bound-parameter limits


def raise_storage_errors(engine: Engine, full: Callable[[BaseException], bool],
                         read_only: Callable[[BaseException], bool]) -> None:
    """Make `engine` raise StorageFull / StorageNotWritable in place of the driver errors that
    `full` / `read_only` recognise (no space left; the database refuses writes), so that callers
    get a domain error that says so instead of an internal one."""

    @event.listens_for(engine, "handle_error")
    def _translate(context: ExceptionContext) -> None:
        error = context.original_exception
        if full(error):
            raise StorageFull("database") from error
        if read_only(error):
            raise StorageNotWritable("the database", str(error)) from error


def _overlapping(table: Any, piece_end: Any, *columns: Any) -> Any:
    """Pieces of `table` overlapping [:start, :end) of log :log_id, in offset order.

    Pieces of one log never overlap, so the candidates start at the last piece beginning at or
    before `start`; that one counts only if it reaches past `start`.
    """
    log_id: BindParameter[int] = bindparam("log_id")
    start: BindParameter[int] = bindparam("start")
    floor = (
        select(func.max(table.c.base_offset))
        .where(table.c.log_id == log_id, table.c.base_offset <= start)
        .scalar_subquery()
    )
    return (
        select(*(columns or (table,)))
        .where(
            table.c.log_id == log_id,
            table.c.base_offset >= func.coalesce(floor, 0),
            table.c.base_offset < bindparam("end"),
            piece_end > start,
        )
        .order_by(table.c.base_offset)
    )


_SEGMENTS_OVERLAPPING = _overlapping(segments, segments.c.base_offset + segments.c.length)
_HEAD_END = head_chunks.c.base_offset + head_chunks.c.length
_HEAD_OVERLAPPING = _overlapping(head_chunks, _HEAD_END)
_HEAD_ARRIVALS = _overlapping(head_chunks, _HEAD_END, head_chunks.c.base_offset, head_chunks.c.arrived_us)


def _state(row: Any) -> LogState:  # any row of _STATE_COLUMNS with them as attributes
    return LogState(
        log_id=row.id,
        start_offset=row.start_offset,
        sealed_offset=row.sealed_offset,
        end_offset=row.end_offset,
        line_count=row.line_count,
        last_append_at=None if row.last_arrived_us is None else row.last_arrived_us / 1_000_000,
    )


def _entry(row: Row[Any] | None) -> IndexEntry | None:
    return None if row is None else IndexEntry(row.offset, row.line, row.appended_at)


class SqlLogRecords:
    """`LogHeads` and `LogSegments` over two SQLAlchemy engines (see the module docstring).

    `row_locks`: lock the task log row (`SELECT ... FOR UPDATE`) in write transactions; needed
    where writers run concurrently (PostgreSQL), pointless where a write transaction already
    holds the database's only write lock (SQLite `BEGIN IMMEDIATE`). Without row locks, this
    process's write transactions also take turns on a lock of their own first, `turns` (the job
    records take theirs there too): a thread waiting for SQLite's write lock would poll it,
    sleeping 1, 2, 5… ms between tries (the busy handler), where one waiting here starts the
    moment the other's commit ends. The tables exist already (`jobtail.meta.database` creates them).
    """

    def __init__(self, writer: Engine, reader: Engine, *, row_locks: bool) -> None:
        self._writer = writer
        self._reader = reader
        self._row_locks = row_locks
        self.turns = None if row_locks else threading.Lock()
        # A backend may answer `log_state`, the hottest read, without SQLAlchemy (`jobtail.meta.sqlite`).
        self.hot_log_state: Callable[[str, str, str], LogState | None] | None = None

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.turns or nullcontext(), self._writer.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._reader.begin() as conn:
            yield conn

    def _locked_log(self, conn: Connection, log_id: int, *columns: Any) -> Row[Any] | None:
        query = select(*columns).where(task_logs.c.id == log_id)
        if self._row_locks:
            query = query.with_for_update()
        return conn.execute(query).one_or_none()

    # -- task log state -----------------------------------------------------------------------

    def log_state(self, project_id: str, job_id: str, task_id: str) -> LogState | None:
        if self.hot_log_state is not None:
            return self.hot_log_state(project_id, job_id, task_id)
        params = {"project_id": project_id, "job_id": job_id, "task_id": task_id}
        with self._read() as conn:
            row = conn.execute(_LOG_STATE, params).one_or_none()
        return None if row is None else _state(row)

    def log_state_by_id(self, log_id: int) -> LogState | None:
        with self._read() as conn:
            row = conn.execute(select(*_STATE_COLUMNS).where(task_logs.c.id == log_id)).one_or_none()
        return None if row is None else _state(row)

    def log_owner(self, log_id: int) -> tuple[str, str] | None:
        with self._read() as conn:
            row = conn.execute(
                select(task_logs.c.job_id, task_logs.c.task_id).where(task_logs.c.id == log_id)
            ).one_or_none()
        return None if row is None else (row.job_id, row.task_id)

    def log_ends(self, log_ids: list[int]) -> dict[int, int]:
        ends: dict[int, int] = {}
        with self._read() as conn:
            for i in range(0, len(log_ids), IDS_PER_QUERY):
                ends.update(conn.execute(_LOG_ENDS, {"ids": log_ids[i : i + IDS_PER_QUERY]}).all())
        return ends

    # -- appending ----------------------------------------------------------------------------

    def append(
        self, log_id: int, expected_end: int, data: bytes, arrived_us: int, policy: IndexPolicy
    ) -> AppendOutcome:
        return self._commit_append(log_id, expected_end, data, arrived_us, policy, keep_bytes=True)

    def _commit_append(
        self, log_id: int, expected_end: int, data: bytes, arrived_us: int, policy: IndexPolicy, *, keep_bytes: bool
    ) -> AppendOutcome:
        """`append` in one transaction; without `keep_bytes`, the head row records the append's
        offset, length and arrival time but not its bytes (another head holds them)."""
        with self._write() as conn:
            row = self._locked_log(
                conn,
                log_id,
                task_logs.c.end_offset,
                task_logs.c.line_count,
                task_logs.c.last_arrived_us,
                task_logs.c.index_offset,
                task_logs.c.index_line,
                task_logs.c.index_time,
            )
            if row is None:
                raise JobNotFound(f"(task log {log_id})")
            if row.end_offset != expected_end:
                return AppendOutcome(stored=False, end_offset=row.end_offset)
            arrived_us = max(arrived_us, row.last_arrived_us or 0)  # never earlier than the previous append
            now = arrived_us / 1_000_000
            last = None
            if row.index_offset is not None:
                last = IndexEntry(row.index_offset, row.index_line, row.index_time)
            entries, newlines = policy.scan(last, expected_end, row.line_count, data, now)
            changes: dict[str, Any] = {
                "end_offset": expected_end + len(data),
                "line_count": row.line_count + newlines,
                "last_arrived_us": arrived_us,
            }
            if entries:
                conn.execute(
                    insert(index_entries),
                    [{"log_id": log_id, "offset": e.offset, "line": e.line, "appended_at": e.appended_at} for e in entries],
                )
                newest = entries[-1]
                changes.update(index_offset=newest.offset, index_line=newest.line, index_time=newest.appended_at)
            conn.execute(insert(head_chunks).values(log_id=log_id, base_offset=expected_end, length=len(data),
                                                    arrived_us=arrived_us, data=data if keep_bytes else b""))
            conn.execute(update(task_logs).where(task_logs.c.id == log_id).values(**changes))
        return AppendOutcome(stored=True, end_offset=expected_end + len(data))

    # -- reading ------------------------------------------------------------------------------

    def head_chunks(self, log_id: int, start: int, end: int) -> list[HeadChunk]:
        with self._read() as conn:
            rows = conn.execute(_HEAD_OVERLAPPING, {"log_id": log_id, "start": start, "end": end}).all()
        return [HeadChunk(r.base_offset, bytes(r.data), r.arrived_us) for r in rows]

    def head_as_segment(self, log_id: int, start: int, max_bytes: int) -> tuple[str, int] | None:
        return None  # the bytes are in rows: a seal copies them

    def head_arrivals(self, log_id: int, start: int, end: int) -> list[Arrival]:
        with self._read() as conn:
            rows = conn.execute(_HEAD_ARRIVALS, {"log_id": log_id, "start": start, "end": end}).all()
        return [Arrival(r.base_offset, r.arrived_us) for r in rows]

    def segments_overlapping(self, log_id: int, start: int, end: int) -> list[Segment]:
        with self._read() as conn:
            rows = conn.execute(_SEGMENTS_OVERLAPPING, {"log_id": log_id, "start": start, "end": end}).all()
        return [Segment(r.base_offset, r.length, r.blob_key, r.created_at) for r in rows]

    def head_to_seal(self, log_id: int, start: int, max_bytes: int) -> list[HeadChunk]:
        with self._read() as conn:
            sizes = conn.execute(
                select(head_chunks.c.base_offset, head_chunks.c.length)
                .where(head_chunks.c.log_id == log_id, head_chunks.c.base_offset >= start)
                .order_by(head_chunks.c.base_offset)
            ).all()
            stop, total = start, 0
            for base, size in sizes:
                if total and total + size > max_bytes:
                    break
                stop, total = base + size, total + size
            rows = conn.execute(
                select(head_chunks.c.base_offset, head_chunks.c.data, head_chunks.c.arrived_us)
                .where(
                    head_chunks.c.log_id == log_id,
                    head_chunks.c.base_offset >= start,
                    head_chunks.c.base_offset < stop,
                )
                .order_by(head_chunks.c.base_offset)
            ).all()
        return [HeadChunk(r.base_offset, bytes(r.data), r.arrived_us) for r in rows]

    # -- sealing ------------------------------------------------------------------------------

    def record_segment(self, log_id: int, segment: Segment) -> bool:
        with self._write() as conn:
            row = self._locked_log(conn, log_id, task_logs.c.sealed_offset, task_logs.c.end_offset)
            if row is None or row.sealed_offset != segment.base_offset:
                return False
            if segment.end_offset > row.end_offset:
                return False
            conn.execute(
                insert(segments).values(
                    log_id=log_id,
                    base_offset=segment.base_offset,
                    length=segment.length,
                    blob_key=segment.blob_key,
                    created_at=segment.created_at,
                )
            )
            conn.execute(
                delete(head_chunks).where(
                    head_chunks.c.log_id == log_id, head_chunks.c.base_offset < segment.end_offset
                )
            )
            conn.execute(
                update(task_logs).where(task_logs.c.id == log_id).values(sealed_offset=segment.end_offset)
            )
        return True

    def segments(self, log_id: int) -> list[Segment]:
        with self._read() as conn:
            rows = conn.execute(
                select(segments).where(segments.c.log_id == log_id).order_by(segments.c.base_offset)
            ).all()
        return [Segment(r.base_offset, r.length, r.blob_key, r.created_at) for r in rows]

    def segment_keys(self, prefix: str) -> set[str]:
        # Not LIKE: SQLite's LIKE ignores case, and job ids differ in case only sometimes.
        matches = func.substr(segments.c.blob_key, 1, len(prefix)) == prefix
        with self._read() as conn:
            return set(conn.scalars(select(segments.c.blob_key).where(matches)))

    def logs_to_seal(self, idle_before: float, min_head_bytes: int) -> list[int]:
        head = task_logs.c.end_offset - task_logs.c.sealed_offset
        with self._read() as conn:
            return list(
                conn.scalars(
                    select(task_logs.c.id).where(
                        head > 0, (task_logs.c.last_arrived_us < idle_before * 1_000_000) | (head >= min_head_bytes)
                    )
                )
            )

    # -- retention ----------------------------------------------------------------------------

    def logs_with_segments_before(self, created_before: float) -> list[int]:
        with self._read() as conn:
            return list(
                conn.scalars(
                    select(segments.c.log_id)
                    .where(segments.c.created_at < created_before)
                    .group_by(segments.c.log_id)
                    .order_by(segments.c.log_id)
                )
            )

    def drop_segments(self, log_id: int, expected_start: int, first_entry: IndexEntry) -> list[str]:
        new_start = first_entry.offset
        with self._write() as conn:
            row = self._locked_log(conn, log_id, task_logs.c.start_offset, task_logs.c.sealed_offset)
            if row is None or row.start_offset != expected_start:
                return []
            if not expected_start < new_start <= row.sealed_offset:
                return []
            dropped = conn.execute(
                select(segments.c.base_offset, segments.c.length, segments.c.blob_key)
                .where(segments.c.log_id == log_id, segments.c.base_offset < new_start)
                .order_by(segments.c.base_offset)
            ).all()
            if not dropped or dropped[-1].base_offset + dropped[-1].length != new_start:
                return []  # not a segment boundary
            conn.execute(
                delete(segments).where(segments.c.log_id == log_id, segments.c.base_offset < new_start)
            )
            conn.execute(
                delete(index_entries).where(index_entries.c.log_id == log_id, index_entries.c.offset < new_start)
            )
            present = conn.execute(
                select(index_entries.c.offset).where(
                    index_entries.c.log_id == log_id, index_entries.c.offset == new_start
                )
            ).one_or_none()
            if present is None:
                conn.execute(
                    insert(index_entries).values(
                        log_id=log_id, offset=new_start, line=first_entry.line, appended_at=first_entry.appended_at
                    )
                )
            conn.execute(update(task_logs).where(task_logs.c.id == log_id).values(start_offset=new_start))
        return [r.blob_key for r in dropped]

    # -- indexes ------------------------------------------------------------------------------

    def index_floor_line(self, log_id: int, line: int) -> IndexEntry | None:
        query = (
            select(index_entries)
            .where(index_entries.c.log_id == log_id, index_entries.c.line <= line)
            .order_by(index_entries.c.line.desc(), index_entries.c.offset.desc())
            .limit(1)
        )
        with self._read() as conn:
            return _entry(conn.execute(query).one_or_none())

    def index_floor_offset(self, log_id: int, offset: int) -> IndexEntry | None:
        query = (
            select(index_entries)
            .where(index_entries.c.log_id == log_id, index_entries.c.offset <= offset)
            .order_by(index_entries.c.offset.desc())
            .limit(1)
        )
        with self._read() as conn:
            return _entry(conn.execute(query).one_or_none())

    def index_ceil_time(self, log_id: int, at: float) -> IndexEntry | None:
        query = (
            select(index_entries)
            .where(index_entries.c.log_id == log_id, index_entries.c.appended_at >= at)
            .order_by(index_entries.c.offset)
            .limit(1)
        )
        with self._read() as conn:
            return _entry(conn.execute(query).one_or_none())

    def index_entries(self, log_id: int, start: int, end: int) -> list[IndexEntry]:
        query = (
            select(index_entries)
            .where(
                index_entries.c.log_id == log_id,
                index_entries.c.offset >= start,
                index_entries.c.offset < end,
            )
            .order_by(index_entries.c.offset)
        )
        with self._read() as conn:
            return [IndexEntry(r.offset, r.line, r.appended_at) for r in conn.execute(query)]

    def checkpoint(self) -> None:
        """SQLite: copy the write-ahead log into the database without blocking writers (its
        auto-checkpoint is off, see `jobtail.meta.sqlite`). Other databases: nothing to do."""
        if self._writer.dialect.name != "sqlite":
            return
        with self._reader.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
