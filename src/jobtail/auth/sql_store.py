"""The identity store on the metadata database (SQLite or PostgreSQL), SQLAlchemy Core.

It works on the engine pair the log store opened on that database (`SqlDatabase.writer` and
`.reader`), so a process holds one pair per database. Every lookup on the request path is one indexed query that
also fetches the caller's role in the requested project, so a revoked credential, a deleted user
or a changed grant counts for the very next request, on every replica.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Select, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from jobtail.auth.errors import IdentityExists, IdentityNotFound, InvalidIdentity
from jobtail.auth.identity_cache import CHANNEL, NotifiedCache
from jobtail.auth.records import Access, Credential, Login, Project, User, new_user_id
from jobtail.auth.schema import credentials, grants, metadata, projects, tokens, users

_CREDENTIAL_ACCESS = (
    select(credentials.c.user_id, credentials.c.project_id, credentials.c.role, credentials.c.job_id, users.c.name,
           grants.c.role)
    .select_from(credentials)
    .outerjoin(users, users.c.id == credentials.c.user_id)
    .outerjoin(grants, and_(grants.c.user_id == credentials.c.user_id, grants.c.project_id == bindparam("project_id")))
    .where(credentials.c.access_key == bindparam("access_key"))
)

_TOKEN_ACCESS = (
    select(tokens.c.project_id, tokens.c.expires_at, users.c.name, grants.c.role)
    .select_from(tokens)
    .join(users, users.c.id == tokens.c.user_id)
    .outerjoin(grants, and_(grants.c.user_id == tokens.c.user_id, grants.c.project_id == bindparam("project_id")))
    .where(tokens.c.digest == bindparam("digest"))
)


class _Prepared:
    """A statement compiled once for an engine's dialect, with its parameters in DBAPI form."""

    def __init__(self, engine: Engine, statement: Select[Any]) -> None:
        compiled = statement.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        self._order = tuple(compiled.positiontup or ()) if compiled.positional else None

    def parameters(self, values: dict[str, str]) -> Sequence[str] | dict[str, str]:
        return values if self._order is None else tuple(values[name] for name in self._order)


class SqlIdentityStore:
    """`IdentityStore` over a (writer, reader) engine pair of the metadata database, creating its
    tables. `cache`: for servers on PostgreSQL, answer request-path lookups from memory, kept
    current by notifications (it starts a listener thread); SQLite lookups are local reads and
    never cached. `close()` stops that thread; the engines belong to whoever made them."""

    def __init__(self, writer: Engine, reader: Engine, *, cache: bool = False,
                 local_fetch: Callable[[str, Sequence[Any]], Sequence[Any] | None] | None = None) -> None:
        self._writer = writer
        self._reader = reader
        self._local_fetch = local_fetch  # the request-path lookups without a pool checkout (SQLite)
        metadata.create_all(writer)
        self.local_reads = reader.dialect.name == "sqlite"
        # PostgreSQL: every write notifies; with `cache`, lookups are answered from memory and
        # invalidated by those notifications (see identity_cache).
        self._notify = writer.dialect.name == "postgresql"
        self._cache = NotifiedCache(writer) if cache and self._notify else None
        self._credential_query = _Prepared(reader, _CREDENTIAL_ACCESS)
        self._token_query = _Prepared(reader, _TOKEN_ACCESS)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._reader.begin() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._writer.begin() as conn:
            yield conn
            if self._notify:  # tell every process's cache, when (and only if) this commits
                conn.execute(select(func.pg_notify(CHANNEL, "")))
        if self._cache is not None:  # and this process's at once
            self._cache.invalidate()

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()

    # -- the request path -------------------------------------------------------------------
    # One indexed query each, sent through the DBAPI directly: SQLAlchemy's per-execution work
    # (cache keys, events, transaction objects) costs ~10x the query itself here. A single
    # SELECT is consistent on its own, so no explicit transaction is needed.

    def _fetch(self, query: _Prepared, **values: str) -> Sequence[Any] | None:
        parameters = query.parameters(values)
        if self._local_fetch is not None and isinstance(parameters, tuple):
            return self._local_fetch(query.sql, parameters)
        conn = self._reader.raw_connection()
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(query.sql, parameters)
                row: Sequence[Any] | None = cursor.fetchone()
            finally:
                cursor.close()
        finally:
            conn.close()  # back to the pool, which rolls back whatever the driver began
        return row

    def cached_access(self, kind: str, key: str, project_id: str) -> Access | None:
        if self._cache is None:
            return None
        found: Access | None = self._cache.get((kind, key, project_id))
        return found

    def _remember(self, kind: str, key: str, project_id: str, generation: int, access: Access | None) -> Access | None:
        if self._cache is not None and access is not None:
            self._cache.put((kind, key, project_id), access, generation)
        return access

    def credential_access(self, access_key: str, project_id: str) -> Access | None:
        generation = self._cache.generation if self._cache else 0
        row = self._fetch(self._credential_query, access_key=access_key, project_id=project_id)
        if row is None:
            return None
        user_id, scope, role, job_id, user_name, granted = row
        if user_id is not None:
            access = Access(subject=f"user {user_name}", kind="user", scope=None, role=granted)
        else:
            access = Access(subject=f"credential {access_key}", kind="project", scope=scope,
                            role=role if scope == project_id else None, job_id=job_id)
        return self._remember("credential", access_key, project_id, generation, access)

    def token_access(self, digest: str, project_id: str) -> Access | None:
        generation = self._cache.generation if self._cache else 0
        row = self._fetch(self._token_query, digest=digest, project_id=project_id)
        if row is None:
            return None
        scope, expires_at, user_name, role = row
        access = Access(subject=f"user {user_name}", kind="token", scope=scope, role=role,
                        expires_at=expires_at)
        return self._remember("token", digest, project_id, generation, access)

    def login(self, user_name: str, project_id: str | None, project_name: str | None) -> Login | None:
        with self._read() as conn:
            user = conn.execute(
                select(users.c.id, users.c.name, users.c.password_hash).where(users.c.name == user_name)
            ).one_or_none()
            if user is None:
                return None
            project = None
            if project_id is not None or project_name is not None:
                where = projects.c.id == project_id if project_id is not None else projects.c.name == project_name
                project = conn.execute(select(projects.c.id, projects.c.name).where(where)).one_or_none()
            role = None
            if project is not None:
                role = conn.execute(
                    select(grants.c.role).where(grants.c.user_id == user.id, grants.c.project_id == project.id)
                ).scalar_one_or_none()
        return Login(user_id=user.id, name=user.name, password_hash=user.password_hash,
                     project_id=None if project is None else project.id,
                     project_name=None if project is None else project.name, role=role)

    def issue_token(self, digest: str, user_id: str, project_id: str | None, expires_at: float, now: float) -> None:
        with self._write() as conn:
            conn.execute(delete(tokens).where(tokens.c.user_id == user_id, tokens.c.expires_at < now))
            conn.execute(insert(tokens).values(digest=digest, user_id=user_id, project_id=project_id,
                                               expires_at=expires_at, created_at=now))

    def token_projects(self, digest: str) -> list[tuple[Project, str]]:
        query = (
            select(projects, grants.c.role)
            .select_from(tokens)
            .join(grants, grants.c.user_id == tokens.c.user_id)
            .join(projects, projects.c.id == grants.c.project_id)
            .where(tokens.c.digest == digest,
                   (tokens.c.project_id.is_(None)) | (tokens.c.project_id == grants.c.project_id))
            .order_by(projects.c.name)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [(Project(r.id, r.name, r.created_at), r.role) for r in rows]

    def revoke_token(self, digest: str, owner_digest: str) -> bool:
        owner = select(tokens.c.user_id).where(tokens.c.digest == owner_digest).scalar_subquery()
        with self._write() as conn:
            result = conn.execute(delete(tokens).where(tokens.c.digest == digest, tokens.c.user_id == owner))
        return bool(result.rowcount)

    # -- administration ---------------------------------------------------------------------

    def create_project(self, project_id: str, name: str, now: float) -> Project:
        try:
            with self._write() as conn:
                taken = conn.execute(
                    select(projects.c.id, projects.c.name)
                    .where((projects.c.id == project_id) | (projects.c.name == name))
                ).first()
                if taken is not None:
                    what = f"id {project_id}" if taken.id == project_id else f"name {name}"
                    raise IdentityExists(f"a project with {what} already exists")
                conn.execute(insert(projects).values(id=project_id, name=name, created_at=now))
        except IntegrityError:  # lost a race with another process
            raise IdentityExists(f"a project with id {project_id} or name {name} already exists") from None
        return Project(project_id, name, now)

    def projects(self) -> list[Project]:
        with self._read() as conn:
            rows = conn.execute(select(projects).order_by(projects.c.created_at, projects.c.id)).all()
        return [Project(r.id, r.name, r.created_at) for r in rows]

    def create_user(self, name: str, password_hash: str | None, now: float) -> User:
        user_id = new_user_id()
        try:
            with self._write() as conn:
                if conn.execute(select(users.c.id).where(users.c.name == name)).first() is not None:
                    raise IdentityExists(f"a user named {name} already exists")
                conn.execute(insert(users).values(id=user_id, name=name, password_hash=password_hash, created_at=now))
        except IntegrityError:
            raise IdentityExists(f"a user named {name} already exists") from None
        return User(user_id, name, now, password_hash is not None)

    def users(self) -> list[User]:
        with self._read() as conn:
            rows = conn.execute(select(users).order_by(users.c.created_at, users.c.name)).all()
            granted = conn.execute(select(grants).order_by(grants.c.project_id)).all()
        by_user: dict[str, list[tuple[str, str]]] = {}
        for g in granted:
            by_user.setdefault(g.user_id, []).append((g.project_id, g.role))
        return [User(r.id, r.name, r.created_at, r.password_hash is not None, tuple(by_user.get(r.id, ())))
                for r in rows]

    def _user_id(self, conn: Connection, name: str) -> str:
        user_id = conn.execute(select(users.c.id).where(users.c.name == name)).scalar_one_or_none()
        if user_id is None:
            raise IdentityNotFound(f"no user named {name}")
        return str(user_id)

    def _check_project(self, conn: Connection, project_id: str) -> None:
        if conn.execute(select(projects.c.id).where(projects.c.id == project_id)).first() is None:
            raise IdentityNotFound(f"no project with id {project_id}")

    def set_password(self, name: str, password_hash: str | None) -> None:
        with self._write() as conn:
            user_id = self._user_id(conn, name)
            conn.execute(update(users).where(users.c.id == user_id).values(password_hash=password_hash))
            conn.execute(delete(tokens).where(tokens.c.user_id == user_id))

    def grant(self, user_name: str, project_id: str, role: str) -> None:
        with self._write() as conn:
            user_id = self._user_id(conn, user_name)
            self._check_project(conn, project_id)
            changed = conn.execute(
                update(grants).where(grants.c.user_id == user_id, grants.c.project_id == project_id).values(role=role)
            ).rowcount
            if not changed:
                conn.execute(insert(grants).values(user_id=user_id, project_id=project_id, role=role))

    def revoke_grant(self, user_name: str, project_id: str) -> bool:
        with self._write() as conn:
            user_id = self._user_id(conn, user_name)
            result = conn.execute(delete(grants).where(grants.c.user_id == user_id, grants.c.project_id == project_id))
        return bool(result.rowcount)

    def delete_user(self, name: str) -> bool:
        with self._write() as conn:
            user_id = conn.execute(select(users.c.id).where(users.c.name == name)).scalar_one_or_none()
            if user_id is None:
                return False
            # Explicit, not only ON DELETE CASCADE: an older SQLite connection might lack foreign keys.
            for table in (tokens, credentials, grants):
                conn.execute(delete(table).where(table.c.user_id == user_id))
            conn.execute(delete(users).where(users.c.id == user_id))
        return True

    def create_credential(self, credential: Credential) -> None:
        with self._write() as conn:
            user_id = None
            if credential.user_name is not None:
                user_id = self._user_id(conn, credential.user_name)
            elif credential.project_id is not None and credential.role is not None:
                self._check_project(conn, credential.project_id)
            else:
                raise InvalidIdentity("a credential belongs to a user, or to a project with a role")
            conn.execute(insert(credentials).values(
                access_key=credential.access_key, user_id=user_id, project_id=credential.project_id,
                role=credential.role, job_id=credential.job_id, description=credential.description,
                created_at=credential.created_at,
            ))

    def credentials(self) -> list[Credential]:
        query = (
            select(credentials, users.c.name)
            .outerjoin(users, users.c.id == credentials.c.user_id)
            .order_by(credentials.c.created_at, credentials.c.access_key)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [Credential(r.access_key, r.created_at, r.name, r.project_id, r.role, r.job_id, r.description)
                for r in rows]

    def revoke_credential(self, access_key: str) -> bool:
        with self._write() as conn:
            result = conn.execute(delete(credentials).where(credentials.c.access_key == access_key))
        return bool(result.rowcount)

    def bootstrap(self, project: Project, user_name: str, credential_key: str, now: float) -> bool:
        try:
            with self._write() as conn:
                for table in (projects, users, credentials):
                    if conn.execute(select(func.count()).select_from(table)).scalar_one():
                        return False
                user_id = new_user_id()
                conn.execute(insert(projects).values(id=project.id, name=project.name, created_at=now))
                conn.execute(insert(users).values(id=user_id, name=user_name, password_hash=None, created_at=now))
                conn.execute(insert(grants).values(user_id=user_id, project_id=project.id, role="admin"))
                conn.execute(insert(credentials).values(access_key=credential_key, user_id=user_id,
                                                        description="bootstrap", created_at=now))
        except IntegrityError:  # another replica bootstrapped at the same moment (same user name)
            return False
        return True
