"""Build a LogStore from Settings: the one place that knows which backend a URL names."""

from __future__ import annotations

from jobtail.blobs.registry import open_blobs
from jobtail.core.store import LogStore
from jobtail.meta.registry import open_meta
from jobtail.settings import Settings


def open_store(settings: Settings) -> LogStore:
    """Open the metadata and blob backends that `settings` names and wrap them in a LogStore."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # private: keys, database, logs
    meta = open_meta(settings.database_url)
    try:
        blobs = open_blobs(settings.blob_url)
    except BaseException:
        meta.close()
        raise
    return LogStore(
        meta,
        blobs,
        preview_bytes=settings.preview_bytes,
        seal_bytes=settings.seal_bytes,
    )
