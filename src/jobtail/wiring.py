"""Build a LogStore from Settings: the one place that knows which backend a URL names."""

from __future__ import annotations

import errno
import os
import tempfile
import uuid

from jobtail.blobs.registry import open_blobs
from jobtail.core.errors import JobtailError, StorageFull, StorageNotWritable
from jobtail.core.store import LogStore
from jobtail.meta.registry import open_meta
from jobtail.settings import Settings, redact_url

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # full is not unwritable: the server starts and serves reads


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


def check_writable(settings: Settings) -> None:
    """Raise StorageNotWritable naming the first of the data directory, the database and the
    segment store that refuses a write (each is tried with one that leaves nothing behind), so
    that a server on read-only storage fails at start rather than on every write."""
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # private: keys, database, logs
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=settings.data_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if exc.errno not in _NO_SPACE:
            raise StorageNotWritable(f"the data directory {settings.data_dir}", exc.strerror or str(exc)) from None
    database = redact_url(settings.database_url)
    _attempt(f"the database {database}", lambda: _check_database(settings.database_url))
    _attempt(f"the segment store {settings.blob_url}", lambda: _check_blobs(settings.blob_url))


def _check_database(url: str) -> None:
    meta = open_meta(url)
    try:
        meta.check_writable()
    finally:
        meta.close()


def _check_blobs(url: str) -> None:
    blobs = open_blobs(url)
    try:
        key = f"write-check.{uuid.uuid4().hex}"
        blobs.put(key, [b""])
        blobs.delete(key)
    finally:
        blobs.close()


def _attempt(what: str, check: object) -> None:
    try:
        check()  # type: ignore[operator]
    except StorageFull:
        pass
    except StorageNotWritable as exc:
        raise StorageNotWritable(what, exc.reason) from None
    except JobtailError:
        raise
    except Exception as exc:  # whatever the driver says (it cannot open the file, permission denied…)
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
            return
        reason = getattr(exc, "orig", None) or exc  # a SQLAlchemy error: the driver's own message
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(reason).splitlines()[0]
        raise StorageNotWritable(what, message) from None
