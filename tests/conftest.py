"""Shared fixtures: every backend the product supports, real servers included.

`meta_url` runs a test once per metadata backend (a SQLite file, a PostgreSQL server that this
session starts), `blob_url` once per blob backend (a local directory, memory, an S3 bucket prefix
on a SeaweedFS server that this session starts). PostgreSQL and SeaweedFS are required in CI (`CI`
set); elsewhere their tests are skipped with the reason when they are missing.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.engine import Engine, open_engine
from support.postgres import PostgresServer, PostgresUnavailable, start_postgres
from support.seaweedfs import SeaweedServer, SeaweedUnavailable, start_seaweedfs

from jobtail.core.jobs import JobService
from jobtail.core.store import LogStore

_database_numbers = itertools.count()
T = TypeVar("T")


def _external(start: Callable[[], T], unavailable: type[Exception], name: str) -> T:
    """A server the suite starts itself; where the machine cannot run it, CI fails and others skip."""
    try:
        return start()
    except unavailable as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{name} unavailable: {exc}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with _external(start_postgres, PostgresUnavailable, "PostgreSQL") as server:
        yield server


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedServer]:
    with _external(start_seaweedfs, SeaweedUnavailable, "SeaweedFS") as server:
        yield server


@pytest.fixture
def s3_blob_url(seaweedfs: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """An `s3://` URL of an empty store (a fresh prefix in the session's SeaweedFS bucket), with
    the credentials in the standard AWS environment variables, where boto3 looks for them."""
    for name, value in seaweedfs.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return seaweedfs.blob_url()


@pytest.fixture(params=["sqlite", "postgresql"])
def meta_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL naming a fresh, empty metadata database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'meta.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"t{os.getpid()}_{next(_database_numbers)}")


@pytest.fixture(params=["file", "memory", "s3"])
def blob_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL naming a fresh, empty blob store of each backend."""
    if request.param == "s3":
        return request.getfixturevalue("s3_blob_url")  # type: ignore[no-any-return]
    return (tmp_path / "blobs").as_uri() if request.param == "file" else "memory://"


@pytest.fixture
def engine_factory(meta_url: str, tmp_path: Path) -> Iterator[Callable[..., Engine]]:
    """Open engines (a LogStore and its JobService) on one metadata database and one blob
    directory (reopening = restart); all are closed at teardown."""
    opened: list[Engine] = []
    blob_url = (tmp_path / "blobs").as_uri()

    def start(**options: object) -> Engine:
        engine = open_engine(meta_url, blob_url, **options)
        opened.append(engine)
        return engine

    yield start
    for engine in opened:
        engine.close()


@pytest.fixture
def store_factory(engine_factory: Callable[..., Engine]) -> Callable[..., LogStore]:
    """Open LogStores (each with its JobService, see `support.engine.jobs_of`) on one database."""

    def open_store(**options: object) -> LogStore:
        return engine_factory(**options).store

    return open_store


@pytest.fixture
def engine(engine_factory: Callable[..., Engine]) -> Engine:
    """An engine on each metadata backend with small seal sizes, so tests cross segments."""
    return engine_factory(seal_bytes=4096, segment_bytes=8192)


@pytest.fixture
def store(engine: Engine) -> LogStore:
    return engine.store


@pytest.fixture
def jobs(engine: Engine) -> JobService:
    return engine.jobs
