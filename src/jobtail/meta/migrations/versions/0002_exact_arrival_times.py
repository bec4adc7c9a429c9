"""Exact arrival times: each head chunk's length and arrival time (epoch µs), the log's newest
arrival in µs instead of `last_append_at` in seconds.

A first-release head chunk never had its own time: it gets that of the newest index entry at or
before it (the index is spaced by time, so that is within a second of its arrival and never
later), else its log's last append, so arrival times stay in offset order.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD/DROP COLUMN on both backends (SQLite >= 3.35): no table is copied.
    op.add_column("head_chunks", sa.Column("length", sa.BigInteger, nullable=False, server_default="0"))
    op.add_column("head_chunks", sa.Column("arrived_us", sa.BigInteger, nullable=False, server_default="0"))
    op.add_column("task_logs", sa.Column("last_arrived_us", sa.BigInteger, nullable=True))
    op.execute(
        "UPDATE task_logs SET last_arrived_us = CAST(last_append_at * 1000000 AS BIGINT) "
        "WHERE last_append_at IS NOT NULL"
    )
    op.execute(
        "UPDATE head_chunks SET length = LENGTH(data), arrived_us = COALESCE("
        "(SELECT CAST(MAX(e.appended_at) * 1000000 AS BIGINT) FROM index_entries e"
        " WHERE e.log_id = head_chunks.log_id AND e.\"offset\" <= head_chunks.base_offset),"
        " (SELECT t.last_arrived_us FROM task_logs t WHERE t.id = head_chunks.log_id), 0)"
    )
    op.drop_column("task_logs", "last_append_at")
    if op.get_bind().dialect.name == "postgresql":  # SQLite keeps the default: it cannot drop one in place
        op.alter_column("head_chunks", "length", server_default=None)
        op.alter_column("head_chunks", "arrived_us", server_default=None)
