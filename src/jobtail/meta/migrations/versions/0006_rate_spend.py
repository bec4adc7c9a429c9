"""Rate-limit spending shared by replicas: requests each process accepted per principal.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_spend",
        sa.Column("process", sa.String(32), primary_key=True),
        sa.Column("principal", sa.String(256), primary_key=True),
        sa.Column("spent", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
