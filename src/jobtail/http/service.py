"""Service operations: health and the API description."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from jobtail import __version__
from jobtail.http.context import context
from jobtail.http.routing import Operation


async def healthz(request: Request) -> Response:
    return Response(orjson.dumps({"status": "ok", "version": __version__}), media_type="application/json")


async def openapi_json(request: Request) -> Response:
    return Response(context(request).openapi, media_type="application/json")


OPERATIONS = [
    Operation("GET", "/healthz", healthz, operation_id="Health", summary="Liveness check.", action=None,
              response={"type": "object", "properties": {"status": {"type": "string"}}}, tags=("service",)),
    Operation("GET", "/openapi.json", openapi_json, operation_id="OpenAPI", summary="This API description.",
              action=None, tags=("service",)),
]
