"""`/metrics` (the Prometheus text format, see `jobtail.metrics`) and the per-request measurement.

`RequestMetrics` times each HTTP request from its arrival to its response's status line (so a
follow stream counts when it starts, not for as long as it stays open) and records it under the
operation's id (set by `jobtail.http.routing`; other routes by their endpoint's name; "unmatched"
for paths with no route) and the status. Its cost per request is a few µs (README, Metrics).

Who may read `/metrics` is `metrics_access`: "loopback" (the default) answers callers on the
loopback interface whose request no proxy forwarded (no `Forwarded`, `X-Forwarded-For` or
`X-Real-IP`), and callers with an admin role elsewhere; "admin" only the latter; "open" everyone.
An admin proves it as on any route (a token or AK/SK) and names the project where it holds the
admin role in `X-Project-Id`; without the header the answer is 403.
"""

from __future__ import annotations

import ipaddress
import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobtail import metrics
from jobtail.http import access
from jobtail.http.context import context
from jobtail.http.routing import Operation

_FORWARDED = (b"forwarded", b"x-forwarded-for", b"x-real-ip")


class RequestMetrics:
    """ASGI middleware: one histogram observation per HTTP request (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_timed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                metrics.observe_request(_operation(scope), status, time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_timed)
        finally:
            if status == 0:  # no response began: the client went away, or the app failed outright
                metrics.observe_request(_operation(scope), 500, time.perf_counter() - started)


def _operation(scope: Scope) -> str:
    operation = scope.get("operation")
    if operation is None:
        endpoint = scope.get("endpoint")
        operation = getattr(endpoint, "__name__", None) or "unmatched"
    return str(operation)


def _loopback(request: Request) -> bool:
    if request.client is None or any(name in _FORWARDED for name, _ in request.scope["headers"]):
        return False
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


async def metrics_text(request: Request) -> Response:
    app = context(request)
    mode = app.settings.metrics_access
    if mode == "admin" or (mode == "loopback" and not _loopback(request)):
        project_id = request.headers.get("x-project-id", "").strip()
        await app.guard.authorize(request, access.MANAGE_PROJECT, project_id)
    body, media_type = await run_in_threadpool(metrics.render)
    return Response(body, headers={"Content-Type": media_type, "Cache-Control": "no-store"})


OPERATIONS = [
    Operation("GET", "/metrics", metrics_text, operation_id="Metrics",
              summary="Prometheus metrics of this server (every worker). Loopback callers, or an admin credential "
              "naming its project in X-Project-Id; see the metrics_access setting (jobtail).",
              action=None, response_types=("text/plain",), tags=("service",)),
]
