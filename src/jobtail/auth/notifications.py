"""A PostgreSQL LISTEN loop for the caches that replicas keep in step (identity, lockout).

`listen` runs in a thread of its caller's until `stop` is set. It takes a connection of its own
from `engine` (detached from the pool: a listening connection can never be lent out), LISTENs on
`channel`, then calls `connected()` (catch up on what changed while nobody listened), then
`notified(payload)` for each notification. When the connection breaks it calls `disconnected()`,
logs one warning, and connects again after a backoff of 0.1 s doubling up to 5 s.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine

POLL_SECONDS = 0.5  # how long the loop waits for a notification before it checks `stop`


def listen(engine: Engine, channel: str, stop: threading.Event, *, connected: Callable[[], None],
           notified: Callable[[str], None], disconnected: Callable[[], None], log: logging.Logger) -> None:
    """LISTEN on `channel` until `stop` is set (see the module docstring)."""
    backoff = 0.1
    while not stop.is_set():
        raw = None
        try:
            raw = engine.raw_connection()
            conn = raw.driver_connection
            raw.detach()  # ours for as long as we listen; never back into the pool
            conn.autocommit = True  # type: ignore[union-attr]
            conn.execute(f"LISTEN {channel}")  # type: ignore[union-attr]
            connected()
            backoff = 0.1
            while not stop.is_set():
                for notice in conn.notifies(timeout=POLL_SECONDS):  # type: ignore[union-attr]
                    notified(notice.payload)
        except Exception:
            if not stop.is_set():
                log.warning("the %s listener lost its database connection; retrying", channel, exc_info=True)
        finally:
            disconnected()
            if raw is not None:
                try:
                    raw.close()
                except Exception:  # already broken
                    pass
        stop.wait(backoff)
        backoff = min(backoff * 2, 5.0)
