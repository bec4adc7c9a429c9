"""Metadata backends on SQL (SQLite, PostgreSQL): job records, and the task logs' offsets, heads,
segment records and indexes. `open_database(url)` opens the one a URL names."""

from jobtail.meta.database import SqlDatabase, open_database

__all__ = ["SqlDatabase", "open_database"]
