"""The job side of the metadata store (`jobtail.core.job_records`) on SQLAlchemy Core: job
records, their status and their events."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from sqlalchemy import Connection, Engine, Row, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from jobtail.core.errors import DuplicateJobName
from jobtail.core.types import DeletedJob, JobEvent, JobQuery, JobRecord, LogPosition, RunningRecord, TaskStatus
from jobtail.meta.schema import head_chunks, index_entries, job_events, jobs, segments, task_logs
from jobtail.meta.sql_logs import IDS_PER_QUERY

_SORT_COLUMNS = {"create_time": jobs.c.created_at, "name": jobs.c.name, "phase": jobs.c.phase}
# The follow poller's query, once per tick for the jobs of every followed log of the process.
_JOB_PHASES = select(jobs.c.id, jobs.c.phase).where(jobs.c.id.in_(bindparam("ids", expanding=True)))


def job_from_row(row: Row[Any]) -> JobRecord:
    return JobRecord(
        id=row.id,
        project_id=row.project_id,
        name=row.name,
        tasks=tuple(row.tasks),
        created_at=row.created_at,
        document=row.document,
        phase=row.phase,
        secondary_phase=row.secondary_phase,
        start_time=row.start_time,
        end_time=row.end_time,
        task_statuses=tuple(TaskStatus(**t) for t in row.task_statuses),
        executor=row.executor,
        owner=row.owner,
        running_records=tuple(_record_from_json(r) for r in row.running_records or ()),
    )


def _record_from_json(data: dict[str, Any]) -> RunningRecord:
    starts = {task: LogPosition(int(p["offset"]), int(p["line"])) for task, p in (data.get("log_starts") or {}).items()}
    return RunningRecord(start_at=int(data["start_at"]), start_type=str(data["start_type"]),
                         end_at=int(data.get("end_at") or 0), end_reason=str(data.get("end_reason") or ""),
                         end_related_task=str(data.get("end_related_task") or ""),
                         end_recover=str(data.get("end_recover") or ""), log_starts=starts)


def _record_to_json(record: RunningRecord) -> dict[str, Any]:
    return {"start_at": record.start_at, "start_type": record.start_type, "end_at": record.end_at,
            "end_reason": record.end_reason, "end_related_task": record.end_related_task,
            "end_recover": record.end_recover,
            "log_starts": {task: {"offset": p.offset, "line": p.line} for task, p in record.log_starts.items()}}


def _status_values(job: JobRecord) -> dict[str, Any]:
    return {
        "phase": job.phase,
        "secondary_phase": job.secondary_phase,
        "start_time": job.start_time,
        "end_time": job.end_time,
        "task_statuses": [{"task": t.task, "exit_code": t.exit_code, "message": t.message} for t in job.task_statuses],
        "owner": job.owner,
    }


class SqlJobRecords:
    """`JobRecords` over a (writer, reader) engine pair; the tables exist already
    (`jobtail.meta.database` creates them). `turns`: a lock write transactions take first, the
    log records' (`SqlLogRecords.turns`), on SQLite: a job written while appends keep its one
    write lock busy would otherwise sleep in SQLite's busy handler (creating a job took p99
    142-648 ms under four writers of 1 MiB appends, 29-35 ms taking turns)."""

    def __init__(self, writer: Engine, reader: Engine, *, turns: threading.Lock | None = None) -> None:
        self._writer = writer
        self._reader = reader
        self._turns = turns

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._turns or nullcontext(), self._writer.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._reader.begin() as conn:
            yield conn

    def create_job(self, job: JobRecord) -> None:
        try:
            with self._write() as conn:
                taken = conn.execute(
                    select(jobs.c.id).where(jobs.c.project_id == job.project_id, jobs.c.name == job.name)
                ).first()
                if taken is not None:
                    raise DuplicateJobName(job.name)
                conn.execute(
                    insert(jobs).values(
                        id=job.id,
                        project_id=job.project_id,
                        name=job.name,
                        tasks=list(job.tasks),
                        created_at=job.created_at,
                        document=job.document,
                        executor=job.executor,
                        running_records=[_record_to_json(r) for r in job.running_records],
                        **_status_values(job),
                    )
                )
                conn.execute(insert(task_logs), [{"job_id": job.id, "task_id": t} for t in job.tasks])
        except IntegrityError as exc:  # a concurrent create of the same name won the race
            raise DuplicateJobName(job.name) from exc

    def get_job(self, project_id: str, job_id: str) -> JobRecord | None:
        with self._read() as conn:
            row = conn.execute(
                select(jobs).where(jobs.c.id == job_id, jobs.c.project_id == project_id)
            ).one_or_none()
        return None if row is None else job_from_row(row)

    def update_job(self, job: JobRecord, expected_phases: tuple[str, ...]) -> bool:
        """Store `job`'s status if its stored phase is one of `expected_phases` (compare-and-set)."""
        with self._write() as conn:
            result = conn.execute(
                update(jobs)
                .where(jobs.c.id == job.id, jobs.c.phase.in_(expected_phases))
                .values(**_status_values(job))
            )
        return result.rowcount == 1

    def set_running_records(self, job_id: str, owner: str, records: tuple[RunningRecord, ...]) -> bool:
        with self._write() as conn:
            result = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.owner == owner)
                .values(running_records=[_record_to_json(r) for r in records])
            )
        return result.rowcount == 1

    def jobs_in_phases(self, phases: tuple[str, ...], executor: str) -> list[JobRecord]:
        with self._read() as conn:
            rows = conn.execute(
                select(jobs)
                .where(jobs.c.phase.in_(phases), jobs.c.executor == executor)
                .order_by(jobs.c.created_at)
            ).all()
        return [job_from_row(r) for r in rows]

    def search_jobs(self, project_id: str, query: JobQuery) -> tuple[int, int, list[JobRecord]]:
        """(jobs in the project, jobs matching, the requested page of matches)."""
        where = [jobs.c.project_id == project_id]
        if query.name_like is not None:
            pattern = query.name_like.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append(jobs.c.name.like(f"%{pattern}%", escape="\\"))
        if query.phases is not None:
            where.append(jobs.c.phase.in_(query.phases))
        if query.created_from is not None:
            where.append(jobs.c.created_at >= query.created_from)
        if query.created_to is not None:
            where.append(jobs.c.created_at <= query.created_to)
        column = _SORT_COLUMNS[query.sort_by]
        order = (column.desc(), jobs.c.id.desc()) if query.descending else (column.asc(), jobs.c.id.asc())
        with self._read() as conn:
            total = conn.scalar(select(func.count()).select_from(jobs).where(jobs.c.project_id == project_id))
            count = conn.scalar(select(func.count()).select_from(jobs).where(*where))
            rows = conn.execute(
                select(jobs).where(*where).order_by(*order).offset(query.page * query.limit).limit(query.limit)
            ).all()
        return int(total or 0), int(count or 0), [job_from_row(r) for r in rows]

    def job_phases(self, job_ids: list[str]) -> dict[str, str]:
        phases: dict[str, str] = {}
        with self._read() as conn:
            for i in range(0, len(job_ids), IDS_PER_QUERY):
                phases.update(conn.execute(_JOB_PHASES, {"ids": job_ids[i : i + IDS_PER_QUERY]}).all())
        return phases

    def delete_job(self, project_id: str, job_id: str) -> DeletedJob | None:
        with self._write() as conn:
            found = conn.execute(
                select(jobs.c.id).where(jobs.c.id == job_id, jobs.c.project_id == project_id)
            ).first()
            if found is None:
                return None
            log_ids = tuple(conn.scalars(select(task_logs.c.id).where(task_logs.c.job_id == job_id)))
            keys = tuple(conn.scalars(select(segments.c.blob_key).where(segments.c.log_id.in_(log_ids))))
            for table in (index_entries, head_chunks, segments):
                conn.execute(delete(table).where(table.c.log_id.in_(log_ids)))
            conn.execute(delete(task_logs).where(task_logs.c.job_id == job_id))
            conn.execute(delete(job_events).where(job_events.c.job_id == job_id))
            conn.execute(delete(jobs).where(jobs.c.id == job_id))
        return DeletedJob(log_ids, keys)

    def add_job_event(self, job_id: str, event: JobEvent) -> None:
        with self._write() as conn:
            conn.execute(
                insert(job_events).values(
                    job_id=job_id, time=event.time, level=event.level, message=event.message, source=event.source
                )
            )

    def job_events(
        self, job_id: str, *, offset: int, limit: int, descending: bool, level: str | None = None,
        pattern: str | None = None, start: int | None = None, end: int | None = None,
    ) -> tuple[int, list[JobEvent]]:
        """(events matching, the requested slice of them) in time order."""
        where = [job_events.c.job_id == job_id]
        if level is not None:
            where.append(job_events.c.level == level)
        if pattern is not None:
            where.append(func.instr(job_events.c.message, pattern) > 0 if self._writer.dialect.name == "sqlite"
                         else func.strpos(job_events.c.message, pattern) > 0)
        if start is not None:
            where.append(job_events.c.time >= start)
        if end is not None:
            where.append(job_events.c.time <= end)
        order = (job_events.c.time.desc(), job_events.c.id.desc()) if descending else (job_events.c.time, job_events.c.id)
        with self._read() as conn:
            total = conn.scalar(select(func.count()).select_from(job_events).where(*where))
            rows = conn.execute(select(job_events).where(*where).order_by(*order).offset(offset).limit(limit)).all()
        return int(total or 0), [JobEvent(r.time, r.level, r.message, r.source) for r in rows]
