"""The identity store on every metadata backend: records, lookups on the request path, cascades."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from support.engine import open_identity

from jobtail.auth import manage
from jobtail.auth.errors import IdentityExists, IdentityNotFound, InvalidIdentity
from jobtail.auth.records import Project
from jobtail.auth.schema import credentials, grants, tokens
from jobtail.auth.sql_store import SqlIdentityStore
from jobtail.meta.database import open_database

MASTER = b"k" * 32


@pytest.fixture
def identity(meta_url: str) -> Iterator[SqlIdentityStore]:
    store = open_identity(meta_url)
    yield store
    store.close()


def test_projects(identity: SqlIdentityStore) -> None:
    generated = manage.create_project(identity, "research")
    assert len(generated.id) == 32 and all(c in "0123456789abcdef" for c in generated.id)
    given = manage.create_project(identity, "prod", "my-project-1")
    assert [p.id for p in identity.projects()] == [generated.id, "my-project-1"]
    with pytest.raises(IdentityExists, match="name research"):
        manage.create_project(identity, "research")
    with pytest.raises(IdentityExists, match="id my-project-1"):
        manage.create_project(identity, "other", given.id)
    for bad_id in ("a" * 65, "under_score", "", "nul\x00"):
        with pytest.raises(InvalidIdentity):
            manage.create_project(identity, "x", bad_id or "bad id")
    with pytest.raises(InvalidIdentity):
        manage.create_project(identity, "has space")


def test_users_grants_and_credential_lookups(identity: SqlIdentityStore) -> None:
    a = manage.create_project(identity, "a").id
    b = manage.create_project(identity, "b").id
    manage.create_user(identity, "alice", "pw")
    manage.grant(identity, "alice", a, "viewer")
    manage.grant(identity, "alice", a, "developer")  # replaces
    manage.grant(identity, "alice", b, "ingest")
    [alice] = identity.users()
    assert alice.has_password and dict(alice.grants) == {a: "developer", b: "ingest"}
    user_key = manage.create_credential(identity, MASTER, user_name="alice").credential.access_key
    access = identity.credential_access(user_key, a)
    assert access is not None and (access.kind, access.scope, access.role) == ("user", None, "developer")
    assert identity.credential_access(user_key, b).role == "ingest"  # type: ignore[union-attr]
    assert identity.credential_access(user_key, "elsewhere").role is None  # type: ignore[union-attr]

    project_key = manage.create_credential(identity, MASTER, project_id=a, role="ingest", job_id="job-1").credential
    access = identity.credential_access(project_key.access_key, a)
    assert access is not None and (access.kind, access.scope, access.role, access.job_id) == ("project", a, "ingest", "job-1")
    assert identity.credential_access(project_key.access_key, b).role is None  # type: ignore[union-attr]
    assert identity.credential_access("NOSUCHKEY", a) is None
    listed = {c.access_key: c for c in identity.credentials()}
    assert listed[user_key].user_name == "alice" and listed[project_key.access_key].owner == f"project {a} role ingest job job-1"

    assert identity.revoke_grant("alice", b) and not identity.revoke_grant("alice", b)
    assert identity.credential_access(user_key, b).role is None  # type: ignore[union-attr]
    assert identity.revoke_credential(project_key.access_key) and not identity.revoke_credential(project_key.access_key)
    assert identity.credential_access(project_key.access_key, a) is None


def test_invalid_administration(identity: SqlIdentityStore) -> None:
    a = manage.create_project(identity, "a").id
    manage.create_user(identity, "bob")
    with pytest.raises(IdentityExists):
        manage.create_user(identity, "bob")
    with pytest.raises(IdentityNotFound):
        manage.grant(identity, "nobody", a, "viewer")
    with pytest.raises(IdentityNotFound):
        manage.grant(identity, "bob", "missing", "viewer")
    with pytest.raises(InvalidIdentity, match="unknown role"):
        manage.grant(identity, "bob", a, "root")
    bad = [
        {}, {"user_name": "bob", "project_id": a, "role": "viewer"}, {"user_name": "bob", "role": "viewer"},
        {"project_id": a}, {"project_id": a, "role": "root"}, {"project_id": a, "role": "viewer", "job_id": "x" * 65},
        {"project_id": "bad_id", "role": "viewer"},
    ]
    for options in bad:
        with pytest.raises(InvalidIdentity):
            manage.create_credential(identity, MASTER, **options)  # type: ignore[arg-type]
    with pytest.raises(IdentityNotFound):
        manage.create_credential(identity, MASTER, user_name="nobody")
    with pytest.raises(IdentityNotFound):
        manage.create_credential(identity, MASTER, project_id="missing", role="viewer")
    assert identity.credentials() == []


def test_tokens_and_user_deletion_cascade(identity: SqlIdentityStore) -> None:
    a = manage.create_project(identity, "a").id
    user = manage.create_user(identity, "carol")
    manage.grant(identity, "carol", a, "viewer")
    key = manage.create_credential(identity, MASTER, user_name="carol").credential.access_key
    now = time.time()
    identity.issue_token("d" * 64, user.id, a, now + 100, now)
    identity.issue_token("e" * 64, user.id, None, now - 1, now - 10)
    identity.issue_token("f" * 64, user.id, None, now + 100, now)  # forgets the expired "e…"
    assert identity.token_access("e" * 64, a) is None
    access = identity.token_access("d" * 64, a)
    assert access is not None and (access.scope, access.role, access.expires_at) == (a, "viewer", now + 100)
    assert identity.token_access("f" * 64, a).scope is None  # type: ignore[union-attr]
    manage.set_password(identity, "carol", "new")
    assert identity.token_access("d" * 64, a) is None
    identity.issue_token("d" * 64, user.id, a, now + 100, now)
    assert identity.delete_user("carol") and not identity.delete_user("carol")
    assert identity.token_access("d" * 64, a) is None and identity.credential_access(key, a) is None
    with identity._reader.connect() as conn:
        for table in (tokens, credentials, grants):
            assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 0


def test_a_tokens_projects_and_revoking_it(identity: SqlIdentityStore) -> None:
    zeta, alpha, other = (manage.create_project(identity, name).id for name in ("zeta", "alpha", "other"))
    erin = manage.create_user(identity, "erin")
    frank = manage.create_user(identity, "frank")
    manage.grant(identity, "erin", zeta, "viewer")
    manage.grant(identity, "erin", alpha, "developer")
    manage.grant(identity, "frank", other, "admin")
    now = time.time()
    identity.issue_token("a" * 64, erin.id, None, now + 100, now)
    identity.issue_token("b" * 64, erin.id, zeta, now + 100, now)
    identity.issue_token("c" * 64, frank.id, None, now + 100, now)
    assert [(p.name, role) for p, role in identity.token_projects("a" * 64)] == [("alpha", "developer"),
                                                                                ("zeta", "viewer")]
    assert [(p.id, role) for p, role in identity.token_projects("b" * 64)] == [(zeta, "viewer")]  # scoped
    assert identity.token_projects("0" * 64) == []
    identity.revoke_grant("erin", zeta)
    assert identity.token_projects("b" * 64) == []
    assert not identity.revoke_token("a" * 64, "c" * 64)  # another user's token stays
    assert not identity.revoke_token("a" * 64, "0" * 64)
    assert identity.revoke_token("a" * 64, "b" * 64) and not identity.revoke_token("a" * 64, "b" * 64)
    assert identity.token_access("a" * 64, alpha) is None
    assert identity.revoke_token("b" * 64, "b" * 64) and identity.token_access("b" * 64, zeta) is None
    assert identity.token_access("c" * 64, other) is not None


def test_login_lookup(identity: SqlIdentityStore) -> None:
    a = manage.create_project(identity, "alpha").id
    manage.create_user(identity, "dave", "pw")
    manage.grant(identity, "dave", a, "admin")
    by_id = identity.login("dave", a, None)
    by_name = identity.login("dave", None, "alpha")
    assert by_id == by_name and by_id is not None and (by_id.project_id, by_id.role) == (a, "admin")
    assert identity.login("dave", None, "nope").project_id is None  # type: ignore[union-attr]
    assert identity.login("nobody", None, None) is None


def test_bootstrap_happens_once_even_when_racing(meta_url: str) -> None:
    stores = [open_identity(meta_url) for _ in range(4)]
    results: list[bool] = []

    def attempt(store: SqlIdentityStore, i: int) -> None:
        results.append(store.bootstrap(Project(f"p{i}", "default", 0.0), "admin", f"AK{i}", time.time()))

    threads = [threading.Thread(target=attempt, args=(s, i)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    assert len(stores[0].projects()) == 1 and len(stores[0].credentials()) == 1
    for store in stores:
        store.close()


def test_identity_tables_live_beside_the_log_metadata_on_the_same_engines(meta_url: str) -> None:
    database = open_database(meta_url)  # the log store opens first, identity later: both sets of tables exist
    identity = SqlIdentityStore(database.writer, database.reader)
    try:
        manage.create_project(identity, "together")
        assert [p.name for p in identity.projects()] == ["together"]
        identity.close()
        assert database.jobs.get_job("together", "no-such-job") is None, "closing the identity store left the engines"
    finally:
        database.close()


def test_postgres_lookups_come_from_memory_until_any_process_changes_identities(meta_url: str) -> None:
    replica, admin = open_identity(meta_url, cache=True), open_identity(meta_url)  # a server and, say, the CLI
    try:
        if replica._cache is None:
            assert replica.local_reads and replica.cached_access("credential", "X", "p") is None
            pytest.skip("SQLite: lookups are local reads, nothing is cached")
        assert replica._cache.wait_live(10)
        project = manage.create_project(admin, "cached").id
        key = manage.create_credential(admin, MASTER, project_id=project, role="viewer").credential.access_key
        assert replica.cached_access("credential", key, project) is None
        deadline = time.monotonic() + 5
        while True:  # a lookup racing the notifications of admin's writes rightly stores nothing
            found = replica.credential_access(key, project)
            if replica.cached_access("credential", key, project) is not None:
                break
            assert time.monotonic() < deadline, "found credentials are never kept"
            time.sleep(0.01)
        assert found is not None and replica.cached_access("credential", key, project) == found
        assert replica.credential_access("UNKNOWN", project) is None
        assert replica.cached_access("credential", "UNKNOWN", project) is None  # absence is never cached

        assert admin.revoke_credential(key)  # another process: its NOTIFY empties the replica's cache
        deadline = time.monotonic() + 5
        while replica.cached_access("credential", key, project) is not None:
            assert time.monotonic() < deadline, "the revocation never reached the replica's cache"
            time.sleep(0.005)
        assert replica.credential_access(key, project) is None
    finally:
        replica.close()
        admin.close()


def test_a_lookup_racing_an_invalidation_does_not_store_its_answer(meta_url: str) -> None:
    identity = open_identity(meta_url, cache=True)
    try:
        cache = identity._cache
        if cache is None:
            pytest.skip("SQLite: nothing is cached")
        assert cache.wait_live(10)
        key = ("credential", "AK", "p")
        before = cache.generation
        cache.invalidate()  # a notification arrives while the lookup is in flight
        cache.put(key, "stale", before)
        assert cache.get(key) is None
        cache.put(key, "fresh", cache.generation)
        assert cache.get(key) == "fresh"
    finally:
        identity.close()


def test_the_cache_recovers_from_a_lost_listener_connection(meta_url: str) -> None:
    identity = open_identity(meta_url, cache=True)
    try:
        cache = identity._cache
        if cache is None:
            pytest.skip("SQLite: nothing is cached")
        assert cache.wait_live(10)
        cache.put(("credential", "AK", "p"), "value", cache.generation)
        # The database drops the listener's session: this test's only (the server is shared by
        # every test, and other tests' listeners losing theirs made them fail at random).
        with identity._writer.connect() as conn:
            killed = conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN jobtail_identity%%'"
            ).all()
        assert killed
        deadline = time.monotonic() + 10
        while cache.get(("credential", "AK", "p")) is not None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert cache.wait_live(10)  # reconnected, starting empty
        assert cache.get(("credential", "AK", "p")) is None
    finally:
        identity.close()
