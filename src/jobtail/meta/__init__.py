"""Metadata backends on SQL (SQLite, PostgreSQL): job records, and the task logs' offsets, heads,
segment records and indexes."""
