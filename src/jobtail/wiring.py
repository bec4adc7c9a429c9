"""Build jobtail's services from Settings: the one place that knows which backend a URL names.

Only the CLI (and tests) import this module: it puts together the storage engine, the metadata
database (one engine pair, shared by the log store, the job records and the identity store), the
blob store, the authenticator and the local executor.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from jobtail import blobs, meta, metrics
from jobtail.auth.authenticator import Authenticator
from jobtail.auth.links import link_key
from jobtail.auth.secrets import load_master_key
from jobtail.auth.sql_store import SqlIdentityStore
from jobtail.core.blob_store import BlobStore
from jobtail.core.errors import JobtailError, StorageFull, StorageNotWritable
from jobtail.core.jobs import JobService
from jobtail.core.maintenance import MaintenancePolicy
from jobtail.core.retention import DAY_SECONDS
from jobtail.core.store import Backends, LogStore, PreviewEncoder
from jobtail.services import Executor, Services
from jobtail.settings import Settings, redact_url

log = logging.getLogger("jobtail.server")

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # full is not unwritable: the server starts and serves reads


def _store(settings: Settings, database: meta.SqlDatabase, preview_encoder: PreviewEncoder | None,
           probes: list[Callable[[], list[str]]] | None = None) -> LogStore:
    segments = blobs.open_cached_blobs(settings.blob_url, settings.data_dir / "segment-cache",
                                       settings.segment_cache_bytes, metrics.segment_cache_lookup)
    if probes is not None:
        probes.append(_readiness(database, segments))

    def close() -> None:
        segments.close()
        database.close()

    return LogStore(
        Backends(database.jobs, database.logs, segments, close, local_reads=database.dialect == "sqlite"),
        preview_bytes=settings.preview_bytes,
        seal_bytes=settings.seal_bytes,
        preview_encoder=preview_encoder,
        preview_cache_bytes=settings.preview_cache_bytes,
        follow_poll_seconds=settings.follow_poll_seconds,
        observer=metrics.STORE,
    )


def _readiness(database: meta.SqlDatabase, segments: BlobStore) -> Callable[[], list[str]]:
    """The readiness probe: one read of the database and one listing of the segment store. The
    answer names which does not answer, never how (the details go to the server log)."""

    def problems() -> list[str]:
        found = []
        try:
            database.ping()
        except Exception:
            log.warning("readiness: the database does not answer", exc_info=True)
            found.append("the database does not answer")
        try:
            next(iter(segments.list("readiness-probe/")), None)
        except Exception:
            log.warning("readiness: the segment store does not answer", exc_info=True)
            found.append("the segment store does not answer")
        return found

    return problems


def open_store(settings: Settings, preview_encoder: PreviewEncoder | None = None) -> LogStore:
    """The LogStore on the backends `settings` names; its `close()` closes them. No background
    maintenance runs unless `start()` is called (servers do; one-off commands need not)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # private: keys, database, logs
    database = meta.open_database(settings.database_url)
    try:
        return _store(settings, database, preview_encoder)
    except BaseException:
        database.close()
        raise


@contextmanager
def open_jobs(settings: Settings) -> Iterator[tuple[JobService, LogStore]]:
    """A JobService and its LogStore for one-off commands, closed afterwards."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    database = meta.open_database(settings.database_url)
    try:
        store = _store(settings, database, None)
    except BaseException:
        database.close()
        raise
    try:
        yield JobService(database.jobs, store, export_roots=settings.export_root_paths,
                         export_obs_urls=settings.export_obs_url_list), store
    finally:
        store.close()


@contextmanager
def open_identity(settings: Settings, *, cache: bool = False) -> Iterator[SqlIdentityStore]:
    """The identity store in the metadata database `settings` names, for one-off commands
    (`jobtail admin project|user|credential`, the first-start bootstrap)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    database = meta.open_database(settings.database_url)
    try:
        identity = SqlIdentityStore(database.writer, database.reader, cache=cache)
        try:
            yield identity
        finally:
            identity.close()
    finally:
        database.close()


def maintenance_policy(settings: Settings) -> MaintenancePolicy:
    return MaintenancePolicy(
        seal_idle_seconds=settings.seal_idle_seconds,
        retention_seconds=settings.retention_days * DAY_SECONDS,
        orphan_grace_seconds=settings.orphan_grace_seconds,
    )


@contextmanager
def open_services(settings: Settings, preview_encoder: PreviewEncoder) -> Iterator[Services]:
    """Everything a server process runs on, for as long as the context lasts: one engine pair on
    the metadata database shared by the log store (started: maintenance runs), the job records
    and the identity store (answering from memory on PostgreSQL); the blob store; the
    authenticator; and, with `executor` "local", the started local executor. Closed in reverse."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # private: keys, database, logs
    master_key = load_master_key(Path(settings.master_key_file))
    with ExitStack() as stack:
        database = meta.open_database(settings.database_url)
        stack.callback(database.close)  # until the store owns it
        probes: list[Callable[[], list[str]]] = []
        store = _store(settings, database, preview_encoder, probes)
        stack.pop_all()
        stack.callback(store.close)  # closes the blob store and the database too
        identity = SqlIdentityStore(database.writer, database.reader, cache=True, local_fetch=database.local_fetch)
        stack.callback(identity.close)
        jobs = JobService(database.jobs, store, export_roots=settings.export_root_paths,
                         export_obs_urls=settings.export_obs_url_list)
        store.start(maintenance_policy(settings))
        executor: Executor | None = None
        if settings.executor == "local":
            from jobtail.runner.local import LocalExecutor

            shared = database.leases if database.dialect == "postgresql" else None  # replicas may share it
            local = LocalExecutor(jobs, store, settings, shared)
            local.start()
            stack.callback(local.stop)
            executor = local
        lockout = None
        rate_exchange = None
        if database.dialect == "postgresql":  # replicas may share it: count failures and requests there
            from jobtail.auth.shared_lockout import SharedLockout
            from jobtail.auth.shared_rates import SpendExchange

            lockout = SharedLockout(database.writer)
            stack.callback(lockout.close)
            rate_exchange = SpendExchange(database.writer).exchange
        authenticator = Authenticator(identity, master_key, lockout=lockout)
        yield Services(store, jobs, link_key(master_key), authenticator, executor, ready=probes[0],
                       rate_exchange=rate_exchange)


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
    database = meta.open_database(url)
    try:
        database.check_writable()
    finally:
        database.close()


def _check_blobs(url: str) -> None:
    segments = blobs.open_blobs(url)
    try:
        key = f"write-check.{uuid.uuid4().hex}"
        segments.put(key, [b""])
        segments.delete(key)
    finally:
        segments.close()


def _attempt(what: str, check: Callable[[], None]) -> None:
    try:
        check()
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
