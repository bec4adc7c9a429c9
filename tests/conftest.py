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

from support.postgres import PostgresServer, PostgresUnavailable, start_postgres  # noqa: E402
from support.seaweedfs import SeaweedServer, SeaweedUnavailable, start_seaweedfs  # noqa: E402

from jobtail.blobs.registry import open_blobs  # noqa: E402
from jobtail.core.store import LogStore  # noqa: E402
from jobtail.meta.registry import open_meta  # noqa: E402

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
def store_factory(meta_url: str, tmp_path: Path) -> Iterator[object]:
    """Open LogStores on one metadata database and one blob directory (reopening = restart)."""
    opened: list[LogStore] = []
    blob_url = (tmp_path / "blobs").as_uri()

    def open_store(**options: object) -> LogStore:
        store = LogStore(open_meta(meta_url), open_blobs(blob_url), **options)  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def store(store_factory: object) -> LogStore:
    """A LogStore on each metadata backend with small seal sizes, so tests cross segments."""
    return store_factory(seal_bytes=4096, segment_bytes=8192)  # type: ignore[operator, no-any-return]
