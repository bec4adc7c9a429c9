"""Metadata backends: jobs, task log heads, segment records and indexes (SQLite, PostgreSQL)."""
