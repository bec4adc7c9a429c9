"""The schema of the first release: jobs, task logs (head, segments, index) and identities.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("tasks", sa.JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("secondary_phase", sa.String(16), nullable=False),
        sa.Column("start_time", sa.BigInteger, nullable=False),
        sa.Column("end_time", sa.BigInteger, nullable=False),
        sa.Column("task_statuses", sa.JSON, nullable=False),
        sa.Column("executor", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.UniqueConstraint("project_id", "name", name="jobs_project_name"),
    )
    op.create_index("jobs_project_created", "jobs", ["project_id", "created_at"])
    op.create_index("jobs_phase", "jobs", ["phase"])
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("time", sa.BigInteger, nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("message", sa.String(2048), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
    )
    op.create_index("job_events_job_time", "job_events", ["job_id", "time"])
    op.create_table(
        "task_logs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("start_offset", sa.BigInteger, nullable=False),
        sa.Column("sealed_offset", sa.BigInteger, nullable=False),
        sa.Column("end_offset", sa.BigInteger, nullable=False),
        sa.Column("line_count", sa.BigInteger, nullable=False),
        sa.Column("last_append_at", sa.Double, nullable=True),
        sa.Column("index_offset", sa.BigInteger, nullable=True),
        sa.Column("index_line", sa.BigInteger, nullable=True),
        sa.Column("index_time", sa.Double, nullable=True),
        sa.UniqueConstraint("job_id", "task_id", name="task_logs_job_task"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "head_chunks",
        sa.Column("log_id", sa.Integer, sa.ForeignKey("task_logs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("base_offset", sa.BigInteger, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "segments",
        sa.Column("log_id", sa.Integer, sa.ForeignKey("task_logs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("base_offset", sa.BigInteger, primary_key=True),
        sa.Column("length", sa.BigInteger, nullable=False),
        sa.Column("blob_key", sa.String(512), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_index("segments_blob_key", "segments", ["blob_key"])
    op.create_table(
        "index_entries",
        sa.Column("log_id", sa.Integer, sa.ForeignKey("task_logs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("offset", sa.BigInteger, primary_key=True),
        sa.Column("line", sa.BigInteger, nullable=False),
        sa.Column("appended_at", sa.Double, nullable=False),
    )
    op.create_index("index_entries_line", "index_entries", ["log_id", "line"])
    op.create_index("index_entries_time", "index_entries", ["log_id", "appended_at"])

    op.create_table(
        "projects",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_table(
        "grants",
        sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("project_id", sa.String(64), sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
    )
    op.create_table(
        "credentials",
        sa.Column("access_key", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
        sa.Column("project_id", sa.String(64), sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=True),
        sa.Column("role", sa.String(16), nullable=True),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_index("credentials_user", "credentials", ["user_id"])
    op.create_index("credentials_project", "credentials", ["project_id"])
    op.create_table(
        "tokens",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("project_id", sa.String(64), sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=True),
        sa.Column("expires_at", sa.Double, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_index("tokens_user", "tokens", ["user_id", "expires_at"])
