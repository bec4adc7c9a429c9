"""The identity tables (in the metadata database, beside the log store's tables).

Projects, users, a role per (user, project), credentials and tokens. No secret is stored: a
credential's secret key is derived from its access key under the master key, tokens are kept
as SHA-256 digests and passwords as scrypt hashes (see jobtail.auth.secrets, .passwords).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Double, ForeignKey, Index, Integer, MetaData, String, Table

metadata = MetaData()

projects = Table(
    "projects",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("created_at", Double, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=True),
    Column("created_at", Double, nullable=False),
)

grants = Table(
    "grants",
    metadata,
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("project_id", String(64), ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
    Column("role", String(16), nullable=False),
)

# A user's credential has user_id; a project credential has project_id and role (and maybe job_id).
credentials = Table(
    "credentials",
    metadata,
    Column("access_key", String(64), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
    Column("project_id", String(64), ForeignKey("projects.id", ondelete="CASCADE"), nullable=True),
    Column("role", String(16), nullable=True),
    Column("job_id", String(64), nullable=True),
    Column("description", String(255), nullable=False, default=""),
    Column("created_at", Double, nullable=False),
    Index("credentials_user", "user_id"),
    Index("credentials_project", "project_id"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("project_id", String(64), ForeignKey("projects.id", ondelete="CASCADE"), nullable=True),
    Column("expires_at", Double, nullable=False),
    Column("created_at", Double, nullable=False),
    Index("tokens_user", "user_id", "expires_at"),
)

# Failed attempts per (access key or "password:USER", client address), for replicas that share
# the database (`jobtail.auth.shared_lockout`): `locked_until` (epoch seconds) is set by the
# failure that reaches the limit; rows whose last failure is older than a lockout period go.
auth_failures = Table(
    "auth_failures",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("address", String(64), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("locked_until", Double, nullable=False),  # 0: not locked
    Column("failed_at", Double, nullable=False),
)

# Requests each server process accepted per principal (a running total), for replicas that share
# the database (`jobtail.auth.shared_rates`): each process adds the others' spending to its own
# rate limiter. Rows of processes that stopped are deleted after a few minutes.
rate_spend = Table(
    "rate_spend",
    metadata,
    Column("process", String(32), primary_key=True),
    Column("principal", String(256), primary_key=True),
    Column("spent", BigInteger, nullable=False),
    Column("updated_at", Double, nullable=False),
)
