"""A live jobtail server behind the real IdentityGuard, with helpers to mint projects and credentials."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkcore.http.http_handler import HttpHandler
from huaweicloudsdkmodelarts.v1 import ModelArtsClient
from support.live import LiveServer

from jobtail.auth import manage
from jobtail.auth.secrets import new_token, token_digest
from jobtail.auth.sql_store import SqlIdentityStore
from jobtail.auth.tokens import TOKEN_TTL
from jobtail.client import Client, Credentials
from jobtail.http.guard import IdentityGuard


@dataclass
class Key:
    access_key: str
    secret_key: str
    project_id: str


@dataclass
class SecureServer:
    """`live` runs with `guard`; `project` is a project with an existing job `job_id` (tasks worker-0, worker-1)."""

    live: LiveServer
    guard: IdentityGuard
    identity: SqlIdentityStore
    master_key: bytes
    project: str
    job_id: str
    _users: int = field(default=0)

    @property
    def url(self) -> str:
        return self.live.url

    def key(self, role: str = "developer", project: str | None = None, job: str | None = None) -> Key:
        """A new project credential with `role`."""
        project = project or self.project
        issued = manage.create_credential(self.identity, self.master_key, project_id=project, role=role, job_id=job)
        return Key(issued.credential.access_key, issued.secret_key, project)

    def user_key(self, grants: dict[str, str]) -> Key:
        """A new user holding `grants` (project -> role) and a credential of that user."""
        self._users += 1
        name = f"user{self._users}-{time.monotonic_ns()}"
        manage.create_user(self.identity, name)
        for project, role in grants.items():
            manage.grant(self.identity, name, project, role)
        issued = manage.create_credential(self.identity, self.master_key, user_name=name)
        return Key(issued.credential.access_key, issued.secret_key, next(iter(grants), self.project))

    def token(self, role: str = "developer", project: str | None = None, *, scoped: bool = True,
              expires_in: float = TOKEN_TTL) -> str:
        """A token of a new user with `role` in `project`, stored directly (no password round trip)."""
        project = project or self.project
        self._users += 1
        name = f"tuser{self._users}-{time.monotonic_ns()}"
        user = manage.create_user(self.identity, name)
        manage.grant(self.identity, name, project, role)
        token = new_token()
        now = time.time()
        self.identity.issue_token(token_digest(token), user.id, project if scoped else None, now + expires_in, now - 1)
        return token

    def client(self, key: Key | None = None, token: str | None = None, project: str | None = None) -> Client:
        credentials = None if key is None else Credentials(key.access_key, key.secret_key, key.project_id)
        return Client(self.url, credentials=credentials, token=token, project_id=project or self.project)

    def sdk(self, key: Key, project: str | None = None, handler: HttpHandler | None = None) -> ModelArtsClient:
        """The official SDK client signing with `key` (for `project`, default the key's)."""
        config = HttpConfig.get_default_config()
        config.retry_times = 0
        credentials = BasicCredentials(key.access_key, key.secret_key, project or key.project_id)
        builder = ModelArtsClient.new_builder().with_credentials(credentials).with_http_config(config)
        if handler is not None:
            builder = builder.with_http_handler(handler)
        return builder.with_endpoints([self.url]).build()
