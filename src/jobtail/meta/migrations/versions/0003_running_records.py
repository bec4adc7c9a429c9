"""Running records (issue 11, fault tolerance): one JSON object per attempt of a job.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("running_records", sa.JSON, nullable=True))  # NULL reads as none
