"""The ASGI application factory."""

from __future__ import annotations

import itertools
import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import orjson
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobtail import metrics
from jobtail.http import (
    download,
    jobs,
    lines,
    logs,
    merged,
    monitoring,
    otlp,
    search,
    service,
    sessions,
    stream,
    tokens,
    viewer,
)
from jobtail.http.access import Guard
from jobtail.http.bodies import UnverifiedReads
from jobtail.http.context import AppContext
from jobtail.http.errors import EXCEPTION_HANDLERS
from jobtail.http.following import Following
from jobtail.http.guard import IdentityGuard
from jobtail.http.limits import RateLimiter
from jobtail.http.openapi import openapi_document
from jobtail.http.routing import Operation, build_routes
from jobtail.services import ServicesOpener
from jobtail.settings import Settings

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
        *monitoring.OPERATIONS,
    ]


class RequestIds:
    """Request ids unique across processes and restarts: 64 random bits drawn when the process
    starts (again in a forked child), then a 64-bit counter; 32 hex digits, as a uuid4's hex.
    A counter costs a tenth of `uuid.uuid4()`, which took 5 % of a small request."""

    def __init__(self) -> None:
        self._reseed()
        os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


_REQUEST_IDS = RequestIds()


class RequestIdMiddleware:
    """Give every request an id and every response an `X-Request-Id` header, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _REQUEST_IDS.next()
        scope.setdefault("state", {})["request_id"] = rid
        header = (b"x-request-id", rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await self.app(scope, receive, send_with_id)


class StaticFirstRouter(Router):
    """Starlette's Router, except that a route whose path has no parameters is found by a dictionary
    lookup instead of by trying every route's regular expression in turn (reaching `/healthz`, the
    last of 23, took ~23 µs of a ~60 µs request). Anything but a full match falls back to the scan."""

    def __init__(self, routes: list[BaseRoute], **options: Any) -> None:
        super().__init__(routes, **options)
        self._static = {route.path: route for route in self.routes if isinstance(route, Route) and "{" not in route.path}

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The path as sent: under a root_path it misses, and the scan below decides.
        route = self._static.get(scope["path"]) if scope["type"] == "http" else None
        if route is not None:
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                scope.setdefault("router", self)
                scope["route"] = route
                scope.update(child_scope)
                await route.handle(scope, receive, send)
                return
        await super().app(scope, receive, send)


class JobtailApp(Starlette):
    """Starlette with `RequestIdMiddleware` outermost, so even a 500 carries `X-Request-Id`."""

    def build_middleware_stack(self) -> ASGIApp:
        return RequestIdMiddleware(monitoring.RequestMetrics(service.Liveness(super().build_middleware_stack())))


def create_app(settings: Settings, services: ServicesOpener, *, guard: Guard | None = None) -> Starlette:
    """The jobtail ASGI app. Its lifespan opens the services with `services` (in a server,
    `jobtail.wiring.open_services`: the store, the job service, the authenticator, the local
    executor) and closes them at shutdown. `guard` decides access; by default an IdentityGuard
    over the services' authenticator (AK/SK signatures and tokens)."""
    ops = operations()
    openapi = orjson.dumps(openapi_document(ops))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        with services(settings, logs.encode_preview) as opened:
            chosen = guard
            if chosen is None:
                if opened.authenticator is None:
                    raise RuntimeError("no guard given and no authenticator to make one")
                chosen = IdentityGuard(opened.authenticator)
            following = Following(opened.store, settings)  # ends streams on SIGTERM
            limiter = RateLimiter(settings.rate_limit_per_second)
            if opened.rate_exchange is not None:
                limiter.share(opened.rate_exchange)
            app.state.context = AppContext(
                settings=settings,
                services=opened,
                guard=chosen,
                limiter=limiter,
                unverified_reads=UnverifiedReads(settings.max_unverified_body_reads),
                following=following,
                logins=anyio.CapacityLimiter(tokens.CONCURRENT_LOGINS),
                openapi=openapi,
            )
            try:
                yield
            finally:
                following.close()
                limiter.close()
                metrics.process_exiting()

    app = JobtailApp(lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS)
    # No slash redirects: their URL would be built from the request's untrusted Host.
    app.router = StaticFirstRouter([*build_routes(ops), *viewer.ROUTES], lifespan=lifespan, redirect_slashes=False)
    return app
