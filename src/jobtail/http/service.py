"""Service operations: liveness, readiness and the API description."""

from __future__ import annotations

import anyio
import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from jobtail import __version__
from jobtail.http.context import context
from jobtail.http.errors import error_response
from jobtail.http.routing import Operation

READY_TIMEOUT = 5.0  # seconds: a backend slower than this to answer is as good as down


LIVENESS = orjson.dumps({"status": "ok", "version": __version__})


async def healthz(request: Request) -> Response:
    """Liveness: the process answers (no backend is asked, so it stays cheap). `Liveness`
    answers it in a server; this route is what the API description and a bare app see."""
    return Response(LIVENESS, media_type="application/json")


class Liveness:
    """ASGI middleware that answers `GET` and `HEAD /healthz` itself, before Starlette's
    middleware, router and request objects: the answer is a constant, and balancers and probes
    ask it every few seconds per replica. That stack cost ~15 µs of a ~40 µs request here
    (README, "Reads while logs change"); the request id and the metrics stay outside this."""

    HEADERS = ((b"content-type", b"application/json"), (b"content-length", str(len(LIVENESS)).encode()))

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/healthz" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        scope["operation"] = "Health"  # the metrics' label, as the route sets it
        await send({"type": "http.response.start", "status": 200, "headers": self.HEADERS})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else LIVENESS})


async def healthz_ready(request: Request) -> Response:
    """Readiness: the database and the segment store answer a read now (for a balancer or a
    Kubernetes readiness probe: a replica that cannot reach them gets no traffic)."""
    probe = context(request).services.ready
    problems = ["the readiness check timed out"]
    if probe is None:
        problems = []
    else:
        with anyio.move_on_after(READY_TIMEOUT):
            problems = await run_in_threadpool(probe)
    if problems:
        return error_response(request, 503, "Jobtail.0503", "Not ready: " + "; ".join(problems) + ".")
    return Response(orjson.dumps({"status": "ready", "version": __version__}), media_type="application/json")


async def openapi_json(request: Request) -> Response:
    return Response(context(request).openapi, media_type="application/json")


OPERATIONS = [
    Operation("GET", "/healthz", healthz, operation_id="Health", summary="Liveness check.", action=None,
              response={"type": "object", "properties": {"status": {"type": "string"}}}, tags=("service",)),
    Operation("GET", "/healthz/ready", healthz_ready, operation_id="Ready",
              summary="Readiness check: the database and the segment store answer (503 Jobtail.0503 when not).",
              action=None, response={"type": "object", "properties": {"status": {"type": "string"}}}, tags=("service",)),
    Operation("GET", "/openapi.json", openapi_json, operation_id="OpenAPI", summary="This API description.",
              action=None, tags=("service",)),
]
