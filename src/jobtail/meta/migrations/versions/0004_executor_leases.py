"""Executor leases: one row per running executor of replicas that share the database.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "executor_leases",
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("host", sa.String(64), nullable=False),
        sa.Column("beats", sa.BigInteger, nullable=False),
        sa.Column("renewed_at", sa.Double, nullable=False),
    )
