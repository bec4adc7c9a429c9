"""The storage engine as the server opens it, on any backend URLs, for tests and benchmarks."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobtail.auth.sql_store import SqlIdentityStore
from jobtail.blobs.registry import open_blobs
from jobtail.core.jobs import JobService
from jobtail.core.store import Backends, LogStore
from jobtail.core.types import JobRecord, JobSpec
from jobtail.meta.database import SqlDatabase, open_database


@dataclass
class Engine:
    """A LogStore and the JobService over the same database; `close()` closes both."""

    store: LogStore
    jobs: JobService
    database: SqlDatabase

    def create_job(self, project_id: str, name: str, *, node_count: int = 1,
                   document: dict[str, Any] | None = None) -> JobRecord:
        """A job that runs elsewhere (executor none, Running): its tasks take appends."""
        return create_job(self.jobs, project_id, name, node_count=node_count, document=document)

    def close(self) -> None:
        self.store.close()


_JOBS: weakref.WeakKeyDictionary[LogStore, JobService] = weakref.WeakKeyDictionary()
_BACKENDS: weakref.WeakKeyDictionary[LogStore, Backends] = weakref.WeakKeyDictionary()


def backends_of(store: LogStore) -> Backends:
    """What an engine's store works on, for tests that look behind the facade."""
    return _BACKENDS[store]


def jobs_of(store: LogStore) -> JobService:
    """The job service beside an engine's store."""
    return _JOBS[store]


def new_job(store: LogStore, project_id: str, name: str, *, node_count: int = 1,
            document: dict[str, Any] | None = None) -> JobRecord:
    """A job that runs elsewhere (executor none) on the job service beside `store` (an engine's)."""
    return create_job(_JOBS[store], project_id, name, node_count=node_count, document=document)


def create_job(jobs: JobService, project_id: str, name: str, *, node_count: int = 1,
               document: dict[str, Any] | None = None) -> JobRecord:
    return jobs.create(project_id, JobSpec(name, node_count=node_count, document=document or {}), executor="none")


def open_engine(database_url: str, blob_url: str, *, export_roots: tuple[Path, ...] = (),
                export_obs_urls: tuple[str, ...] = (), **options: Any) -> Engine:
    """The engine on the given backends (LogStore keyword arguments in `options`; `export_roots`
    and `export_obs_urls` the JobService's)."""
    database = open_database(database_url)
    blobs = open_blobs(blob_url)

    def close() -> None:
        blobs.close()
        database.close()

    backends = Backends(database.jobs, database.logs, blobs, close, local_reads=database.dialect == "sqlite")
    store = LogStore(backends, **options)
    jobs = JobService(database.jobs, store, export_roots=export_roots, export_obs_urls=export_obs_urls)
    _JOBS[store], _BACKENDS[store] = jobs, backends
    return Engine(store, jobs, database)


class OwnedIdentity(SqlIdentityStore):
    """An identity store that closes its database with itself (servers share theirs)."""

    def __init__(self, database: SqlDatabase, *, cache: bool = False) -> None:
        super().__init__(database.writer, database.reader, cache=cache)
        self._database = database

    def close(self) -> None:
        super().close()
        self._database.close()


def open_identity(database_url: str, *, cache: bool = False) -> OwnedIdentity:
    """The identity store in the database named by `database_url`, on engines of its own."""
    return OwnedIdentity(open_database(database_url), cache=cache)
