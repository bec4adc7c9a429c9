"""The executor leases of replicas sharing one database, in `executor_leases` (see
`jobtail.runner.leases` for what they mean; this module only keeps the rows)."""

from __future__ import annotations

import time

from sqlalchemy import Engine, delete, insert, select, update

from jobtail.meta.schema import executor_leases

TAKEN = -1  # `beats` of a lease a peer has taken over: its owner may not renew it


class SqlExecutorLeases:
    """`jobtail.runner.leases.ExecutorLeases` over the writer engine of the metadata database."""

    def __init__(self, writer: Engine) -> None:
        self._writer = writer

    def register(self, owner: str, host: str) -> None:
        with self._writer.begin() as conn:
            conn.execute(insert(executor_leases).values(owner=owner, host=host, beats=0, renewed_at=time.time()))

    def renew(self, owner: str) -> bool:
        """Bump the lease's beats; False when it is gone or was taken over (the owner lost it)."""
        with self._writer.begin() as conn:
            done = conn.execute(update(executor_leases)
                                .where(executor_leases.c.owner == owner, executor_leases.c.beats != TAKEN)
                                .values(beats=executor_leases.c.beats + 1, renewed_at=time.time()))
        return done.rowcount == 1

    def beats(self) -> dict[str, tuple[str, int]]:
        """Every lease: owner → (host, beats)."""
        with self._writer.connect() as conn:
            rows = conn.execute(select(executor_leases.c.owner, executor_leases.c.host, executor_leases.c.beats))
            return {row.owner: (row.host, row.beats) for row in rows}

    def take(self, owner: str, beats: int) -> bool:
        """Take over the lease if it still stands at `beats` (compare-and-set: one peer wins)."""
        with self._writer.begin() as conn:
            done = conn.execute(update(executor_leases)
                                .where(executor_leases.c.owner == owner, executor_leases.c.beats == beats)
                                .values(beats=TAKEN))
        return done.rowcount == 1

    def drop(self, owner: str) -> None:
        with self._writer.begin() as conn:
            conn.execute(delete(executor_leases).where(executor_leases.c.owner == owner))
