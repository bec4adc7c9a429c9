"""The ASGI application factory."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobtail.core.store import LogStore
from jobtail.auth.links import link_key
from jobtail.auth.secrets import load_master_key
from jobtail.core.jobs import JobService
from jobtail.http import download, jobs, lines, logs, merged, otlp, search, service, sessions, stream, tokens, viewer
from jobtail.http.access import Guard
from jobtail.http.bodies import UnverifiedReads
from jobtail.http.errors import EXCEPTION_HANDLERS
from jobtail.http.guard import open_identity_guard
from jobtail.http.limits import RateLimiter
from jobtail.http.maintenance import Maintenance
from jobtail.http.openapi import openapi_document
from jobtail.http.preview_cache import PreviewCache
from jobtail.http.routing import Operation, build_routes
from jobtail.settings import Settings
from jobtail.wiring import open_store

log = logging.getLogger("jobtail")


def operations() -> list[Operation]:
    """Every operation jobtail serves, in documentation order."""
    return [
        *jobs.OPERATIONS,
        *logs.OPERATIONS,
        *lines.OPERATIONS,
        *merged.OPERATIONS,
        *download.OPERATIONS,
        *stream.OPERATIONS,
        *search.OPERATIONS,
        *tokens.OPERATIONS,
        *sessions.OPERATIONS,
        *otlp.OPERATIONS,
        *service.OPERATIONS,
    ]


class RequestIdMiddleware:
    """Give every request an id and every response an `X-Request-Id` header, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        header = (b"x-request-id", rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await self.app(scope, receive, send_with_id)


class JobtailApp(Starlette):
    """Starlette with `RequestIdMiddleware` outermost, so even a 500 carries `X-Request-Id`."""

    def build_middleware_stack(self) -> ASGIApp:
        return RequestIdMiddleware(super().build_middleware_stack())


def create_app(
    settings: Settings | None = None, *, store: LogStore | None = None, guard: Guard | None = None
) -> Starlette:
    """The jobtail ASGI app. Opens the store named by `settings` at startup unless `store` is
    given (then the caller owns it). `guard` decides access; by default an `IdentityGuard` on the
    same database (AK/SK signatures and tokens), opened at startup."""
    settings = settings or Settings()
    ops = operations()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = store is None
        if guard is None:
            app.state.guard = open_identity_guard(settings.database_url, Path(settings.master_key_file))
        app.state.store = open_store(settings) if owned else store
        app.state.link_key = link_key(load_master_key(Path(settings.master_key_file)))
        app.state.jobs = JobService(app.state.store)
        maintenance = Maintenance(app.state.store, settings)
        maintenance.start()
        app.state.following = stream.Following(app.state.store, settings)  # live follow: notifier, SIGTERM hook
        if settings.executor == "local":
            from jobtail.runner.local import LocalExecutor

            app.state.executor = LocalExecutor(app.state.jobs, settings)
            app.state.executor.start()
        try:
            yield
        finally:
            if app.state.executor is not None:
                app.state.executor.stop()
            maintenance.stop()
            app.state.following.close()
            if owned:
                app.state.store.close()
            if guard is None:
                app.state.guard.close()

    app = JobtailApp(routes=[*build_routes(ops), *viewer.ROUTES], lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]
    app.router.redirect_slashes = False  # its redirect would be built from the request's untrusted Host
    app.state.settings = settings
    app.state.guard = guard  # None until startup opens the default IdentityGuard
    app.state.preview_cache = PreviewCache(settings.preview_cache_bytes)
    app.state.limiter = RateLimiter(settings.rate_limit_per_second)
    app.state.unverified_reads = UnverifiedReads(settings.max_unverified_body_reads)
    app.state.executor = None  # a LocalExecutor from startup when settings.executor == "local"
    app.state.openapi = orjson.dumps(openapi_document(ops))
    return app
