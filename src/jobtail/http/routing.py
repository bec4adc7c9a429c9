"""Operations: a route plus what it needs (its action, its body) and what it documents.

Each API operation is declared once as an `Operation`; `build_routes` turns the table into
Starlette routes that validate the project id, read a bounded body, consult the Guard and
only then call the handler, and `jobtail.http.openapi` documents the very same table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobtail.core import ids
from jobtail.core.errors import PayloadTooLarge

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True, slots=True)
class Operation:
    """One API operation. `action` None means public (health, the API description)."""

    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    action: str | None
    query: tuple[Param, ...] = ()
    body_type: str | None = None  # media type of the request body, when it takes one
    status: int = 200
    response: dict[str, Any] | None = None  # JSON schema of the success body
    tags: tuple[str, ...] = ()
    # Where the project comes from when the path has none (called after the body is read;
    # "" = none named); e.g. OTLP's X-Project-Id header or resource attributes.
    project: Callable[[Request], str] | None = None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (before reading it all) anything over `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        parts.append(chunk)
    return b"".join(parts)


def _endpoint(op: Operation) -> Handler:
    async def endpoint(request: Request) -> Response:
        project_id = request.path_params.get("project_id")
        if project_id is not None:
            ids.check_project_id(project_id)
        if op.body_type is not None:
            request.state.body = await read_body(request, request.app.state.settings.max_body_bytes)
        if project_id is None and op.project is not None:
            project_id = op.project(request)
        if op.action is not None:
            guard = request.app.state.guard
            request.state.principal = await guard.authorize(request, op.action, project_id or "")
            limiter = getattr(request.app.state, "limiter", None)  # per-credential rate (http.limits)
            if limiter is not None:
                limiter.take(request.state.principal)
        return await op.handler(request)

    endpoint.__name__ = op.operation_id
    return endpoint


def build_routes(operations: list[Operation]) -> list[Route]:
    """Starlette routes for `operations`; operations sharing a path share one Route per method."""
    return [Route(op.path, _endpoint(op), methods=[op.method]) for op in operations]
