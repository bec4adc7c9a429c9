"""The per-credential rate limit counted across replicas that share a PostgreSQL database.

Each server process keeps its own token buckets (`jobtail.http.limits.RateLimiter`), so a request
never waits on the database. Every `SYNC_SECONDS` a thread of the limiter's calls `exchange` here
with the running totals of requests this process accepted for the principals it saw lately: they
are written to `rate_spend` (one row per process and principal) and the other processes' totals
for the same principals come back; what they spent since the last exchange is taken from this
process's buckets. Together the replicas then admit about one bucket's worth — `rate` per second
after a burst — whichever replicas the requests reach. The error is bounded: what the others
accepted within one exchange interval, plus one burst per replica for a principal that replica
has not seen in the last `ACTIVE_SECONDS`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping

from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from jobtail.auth.schema import rate_spend

STALE_SECONDS = 300.0  # rows of a process that has not written for this long are deleted


class SpendExchange:
    """One process's side of `rate_spend` (see the module docstring). Thread-safe."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.process = secrets.token_hex(16)  # a restarted process starts a new running total
        self._swept_at = 0.0

    def exchange(self, spent: Mapping[str, int], names: list[str]) -> dict[tuple[str, str], int]:
        """Record this process's running totals `spent` (principals whose total moved), and
        return the other live processes' running totals for `names`, keyed (process, principal)."""
        now = time.time()
        with self._engine.begin() as conn:
            if spent:
                insert = pg_insert(rate_spend)
                conn.execute(
                    insert.on_conflict_do_update(index_elements=[rate_spend.c.process, rate_spend.c.principal],
                                                 set_={"spent": insert.excluded.spent,
                                                       "updated_at": insert.excluded.updated_at}),
                    [{"process": self.process, "principal": name, "spent": total, "updated_at": now}
                     for name, total in sorted(spent.items())],  # in key order: concurrent upserts cannot deadlock
                )
            others: dict[tuple[str, str], int] = {}
            if names:
                rows = conn.execute(select(rate_spend.c.process, rate_spend.c.principal, rate_spend.c.spent)
                                    .where(rate_spend.c.principal.in_(names), rate_spend.c.process != self.process,
                                           rate_spend.c.updated_at > now - STALE_SECONDS))
                others = {(row.process, row.principal): row.spent for row in rows}
            if now - self._swept_at > STALE_SECONDS:
                self._swept_at = now
                conn.execute(delete(rate_spend).where(rate_spend.c.updated_at < now - STALE_SECONDS))
        return others
