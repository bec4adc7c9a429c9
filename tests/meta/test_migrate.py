"""Schema migrations (jobtail.meta.migrate): a fresh database gets exactly `schema.py`'s tables,
a first-release database (tests/meta/first_wave, made by its make.py from commit 72f3ba5) is
upgraded with its data intact, replicas starting together do not race, and a database upgraded
by a newer jobtail is refused without being touched."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, inspect, text
from support.postgres import PostgresServer

from jobtail.auth import schema as auth_schema
from jobtail.auth.secrets import secret_key_for
from jobtail.core.errors import SchemaTooNew
from jobtail.core.types import TaskRef
from jobtail.meta import migrate, open_database
from jobtail.meta import schema as meta_schema
from jobtail.settings import Settings
from jobtail.wiring import open_identity, open_store

FIRST_WAVE = Path(__file__).with_name("first_wave")
# The tables of the last build before migrations (main with issue 11), which had revision 0003's schema.
PRE_MIGRATION_TABLES = {"jobs", "job_events", "task_logs", "head_chunks", "segments", "index_entries",
                        "projects", "users", "grants", "credentials", "tokens"}


def _schema() -> MetaData:
    """Every table this build declares, as `compare_metadata` wants them: one MetaData."""
    combined = MetaData()
    for table in [*meta_schema.metadata.tables.values(), *auth_schema.metadata.tables.values()]:
        table.to_metadata(combined)
    return combined


def _sync_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _differences(url: str) -> list[object]:
    engine = create_engine(_sync_url(url))
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), _schema()))
    finally:
        engine.dispose()


def test_fresh_database_gets_exactly_the_declared_schema(meta_url: str) -> None:
    """The revisions and schema.py agree: a schema change without a revision fails here."""
    open_database(meta_url).close()
    assert _differences(meta_url) == []
    engine = create_engine(_sync_url(meta_url))
    with engine.connect() as conn:
        assert migrate.revision(conn) == migrate.head()
    engine.dispose()


def test_database_made_before_migrations_is_stamped_and_kept(meta_url: str) -> None:
    """A database the builds between the first release and migrations made (create_all of the
    same schema, no alembic_version) is adopted at its revision; its rows stay."""
    engine = create_engine(_sync_url(meta_url))
    for schema in (meta_schema, auth_schema):
        before = [table for table in schema.metadata.sorted_tables if table.name in PRE_MIGRATION_TABLES]
        schema.metadata.create_all(engine, tables=before)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO projects (id, name, created_at) VALUES ('p1', 'kept', 1.0)"))
    open_database(meta_url).close()
    with engine.connect() as conn:
        assert migrate.revision(conn) == migrate.head()
        assert conn.execute(text("SELECT name FROM projects")).scalar_one() == "kept"
    engine.dispose()
    assert _differences(meta_url) == []


def test_newer_schema_is_refused_untouched(meta_url: str) -> None:
    open_database(meta_url).close()
    engine = create_engine(_sync_url(meta_url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed'"))
        conn.execute(text("CREATE TABLE from_the_future (x INTEGER)"))
    with pytest.raises(SchemaTooNew) as refused:
        open_database(meta_url)
    assert "f00dfeed" in refused.value.message and migrate.head() in refused.value.message
    with engine.connect() as conn:
        assert migrate.revision(conn) == "f00dfeed"
        assert inspect(conn).has_table("from_the_future")
    engine.dispose()


def test_serve_refuses_a_newer_schema_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'jobtail.db'}"
    open_database(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed'"))
    engine.dispose()
    done = subprocess.run([sys.executable, "-m", "jobtail", "serve", "--data-dir", str(tmp_path / "data"),
                           "--port", "0"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "f00dfeed" in lines[0] and "newer than this jobtail knows" in lines[0], done.stderr


_RACE = textwrap.dedent("""
    import sys
    from jobtail.meta import open_database
    open_database(sys.argv[1]).close()
""")


def test_replicas_starting_together_upgrade_once(meta_url: str) -> None:
    racers = [subprocess.Popen([sys.executable, "-c", _RACE, meta_url], stderr=subprocess.PIPE, text=True)
              for _ in range(4)]
    for racer in racers:
        _, err = racer.communicate(timeout=120)
        assert racer.returncode == 0, err
    assert _differences(meta_url) == []
    engine = create_engine(_sync_url(meta_url))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    engine.dispose()


# -- a first-release database, with data ---------------------------------------------------------

def _first_wave_sqlite(tmp_path: Path) -> tuple[str, Path]:
    shutil.copytree(FIRST_WAVE / "sqlite", tmp_path / "fw")
    return f"sqlite:///{tmp_path / 'fw' / 'jobtail.db'}", tmp_path / "fw"


def _first_wave_postgres(tmp_path: Path, server: PostgresServer) -> tuple[str, Path]:
    shutil.copytree(FIRST_WAVE / "postgres", tmp_path / "fw")
    url = server.create_database(f"first_wave_{tmp_path.name[-12:].replace('-', '_')}")
    dump = (tmp_path / "fw" / "postgres.sql").read_text()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(dump)  # pg_dump's plain format: the first release's tables, rows and sequences
        conn.execute("SELECT pg_catalog.set_config('search_path', 'public', false)")
    return url, tmp_path / "fw"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_first_release_database_upgrades_with_its_data(backend: str, tmp_path: Path,
                                                       request: pytest.FixtureRequest) -> None:
    if backend == "sqlite":
        url, directory = _first_wave_sqlite(tmp_path)
    else:
        url, directory = _first_wave_postgres(tmp_path, request.getfixturevalue("postgres"))
    expected = json.loads((directory / "expected.json").read_text())
    engine = create_engine(_sync_url(url))
    with engine.connect() as conn:
        assert migrate.revision(conn) is None and inspect(conn).has_table("task_logs")  # as released
        arrivals_before = conn.execute(text("SELECT max(appended_at) FROM index_entries")).scalar_one()
    engine.dispose()

    settings = Settings(data_dir=directory, database_url=url, blob_url=(directory / "blobs").as_uri())
    store = open_store(settings)
    try:
        for task, log in expected["logs"].items():
            ref = TaskRef(expected["project"], expected["job"], task)
            state = store.state(ref)
            data = b"".join(store.read(state, 0, state.end_offset))
            assert (len(data), data.count(b"\n")) == (log["size"], log["lines"])
            assert hashlib.sha256(data).hexdigest() == log["sha256"]
            assert state.line_count == log["lines"] and state.sealed_offset > 0  # segments and a head
            assert store.preview(state).content.endswith("step 39 loss=0.0250\n")
            times = store.arrival_times(state, [0, state.sealed_offset, state.end_offset - 1])
            assert times == sorted(times) and 0 < times[-1] <= arrivals_before + 1  # from the old index/head
            store.append(ref, b"after the upgrade\n")  # the upgraded head takes appends, and seals
            store.seal(ref)
            state = store.state(ref)
            tail = b"".join(store.read(state, state.end_offset - 18, state.end_offset))
            assert tail == b"after the upgrade\n" and state.sealed_offset == state.end_offset
    finally:
        store.close()

    with open_identity(settings) as identity:
        access = identity.credential_access(expected["access_key"], expected["project"])
        assert access is not None and access.role == "ingest"
        master_key = bytes.fromhex(expected["master_key"])
        assert secret_key_for(master_key, expected["access_key"]) == expected["secret_key"]
        assert [user.name for user in identity.users()] == ["alice"]
        assert identity.login("alice", expected["project"], None) is not None
    assert _differences(url) == []
