"""The metadata schema, shared by every SQL backend."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("name", String(64), nullable=False),
    Column("tasks", JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("document", JSON, nullable=False),
    Column("phase", String(16), nullable=False),
    Column("secondary_phase", String(16), nullable=False),
    Column("start_time", BigInteger, nullable=False, default=0),
    Column("end_time", BigInteger, nullable=False, default=0),
    Column("task_statuses", JSON, nullable=False),
    Column("executor", String(16), nullable=False),
    Column("owner", String(128), nullable=True),
    # One object per attempt (jobtail.core.types.RunningRecord), written only by the job's owner
    # (SqlJobRecords.set_running_records), never by a phase change; NULL reads as none (issue 11).
    Column("running_records", JSON, nullable=True),
    UniqueConstraint("project_id", "name", name="jobs_project_name"),
    Index("jobs_project_created", "project_id", "created_at"),
    Index("jobs_phase", "phase"),
)

job_events = Table(
    "job_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(64), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("time", BigInteger, nullable=False),
    Column("level", String(16), nullable=False),
    Column("message", String(2048), nullable=False),
    Column("source", String(16), nullable=False),
    Index("job_events_job_time", "job_id", "time"),
)

# One row per task log. end_offset/line_count/index_* change on every append, sealed_offset on
# every seal, start_offset on retention.
task_logs = Table(
    "task_logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(64), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("task_id", String(64), nullable=False),
    Column("start_offset", BigInteger, nullable=False, default=0),
    Column("sealed_offset", BigInteger, nullable=False, default=0),
    Column("end_offset", BigInteger, nullable=False, default=0),
    Column("line_count", BigInteger, nullable=False, default=0),
    Column("last_arrived_us", BigInteger, nullable=True),  # epoch µs of the newest append
    Column("index_offset", BigInteger, nullable=True),  # newest index entry, to space the next one
    Column("index_line", BigInteger, nullable=True),
    Column("index_time", Double, nullable=True),
    UniqueConstraint("job_id", "task_id", name="task_logs_job_task"),
    sqlite_autoincrement=True,  # never reuse a log id, even after a job is deleted
)

# The head: acknowledged bytes not yet sealed, one row per append, with its arrival time (epoch
# µs; sealing carries it into the segment's arrival trailer, see jobtail.core.arrivals).
head_chunks = Table(
    "head_chunks",
    metadata,
    Column("log_id", Integer, ForeignKey("task_logs.id", ondelete="CASCADE"), primary_key=True),
    Column("base_offset", BigInteger, primary_key=True),
    Column("length", BigInteger, nullable=False),  # len(data), without reading (or detoasting) it
    Column("arrived_us", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
)

segments = Table(
    "segments",
    metadata,
    Column("log_id", Integer, ForeignKey("task_logs.id", ondelete="CASCADE"), primary_key=True),
    Column("base_offset", BigInteger, primary_key=True),
    Column("length", BigInteger, nullable=False),
    Column("blob_key", String(512), nullable=False),
    Column("created_at", Double, nullable=False),
    Index("segments_blob_key", "blob_key"),
)

# The sparse line and time index: offset -> (newlines before it, arrival time).
index_entries = Table(
    "index_entries",
    metadata,
    Column("log_id", Integer, ForeignKey("task_logs.id", ondelete="CASCADE"), primary_key=True),
    Column("offset", BigInteger, primary_key=True),
    Column("line", BigInteger, nullable=False),
    Column("appended_at", Double, nullable=False),
    Index("index_entries_line", "log_id", "line"),
    Index("index_entries_time", "log_id", "appended_at"),
)
