"""Alembic revisions of the metadata database's schema (`versions/`); `jobtail.meta.migrate` runs them."""
