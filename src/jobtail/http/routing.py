"""Operations: a route plus what it needs (its action, its body) and what it documents.

Each API operation is declared once as an `Operation`; `build_routes` turns the table into
Starlette routes that validate the project id, consult the Guard (before reading a body, as far
as the credential allows: `Guard.admit`), read a bounded body, and only then call the handler;
`jobtail.http.openapi` documents the very same table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobtail.core import ids
from jobtail.http.access import Principal
from jobtail.http.bodies import read_body, refuse_declared_oversize
from jobtail.http.context import context

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
    body_required: bool = True  # False: an empty body is fine too (documented so)
    status: int = 200
    response: dict[str, Any] | None = None  # JSON schema of the success body
    response_types: tuple[str, ...] = ("application/json",)  # media types the success body comes in
    tags: tuple[str, ...] = ()
    # The success may carry an ETag ("strong": always; "weak": when its content cannot change),
    # and If-None-Match with it answers 304 with no body.
    etag: str | None = None
    # Where the project comes from when the path has none (called after the body is read;
    # "" = none named); e.g. OTLP's X-Project-Id header or resource attributes.
    project: Callable[[Request], str] | None = None


def _throttle(request: Request, principal: Principal) -> None:
    context(request).limiter.take(principal)  # per-credential rate (http.limits)


def _endpoint(op: Operation) -> Handler:
    project_in_body = op.project is not None and "{project_id}" not in op.path

    async def endpoint(request: Request) -> Response:
        request.scope["operation"] = op.operation_id  # the metrics' label (jobtail.http.monitoring)
        project_id = request.path_params.get("project_id")
        if project_id is not None:
            ids.check_project_id(project_id)
        app = context(request)
        guard = app.guard
        principal: Principal | None = None
        if op.body_type is not None:
            limit = app.settings.max_body_bytes
            refuse_declared_oversize(request, limit)
            proven = False
            if op.action is not None:  # credentials first: a bad one costs no body
                admission = await guard.admit(request, op.action, None if project_in_body else project_id or "")
                principal, proven = admission.principal, admission.proven
                if principal is not None:
                    _throttle(request, principal)
            if proven:
                request.state.body, _ = await read_body(request, limit, hashed=False)
            else:  # a pending signature covers the body's hash
                async with app.unverified_reads.slot():
                    request.state.body, request.state.body_sha256 = await read_body(request, limit, hashed=True)
        if op.action is not None:
            if principal is None:
                if project_id is None and op.project is not None:
                    project_id = op.project(request)
                principal = await guard.authorize(request, op.action, project_id or "")
                _throttle(request, principal)
            request.state.principal = principal
        return await op.handler(request)

    endpoint.__name__ = op.operation_id
    return endpoint


def _route(path: str, endpoints: dict[str, Handler]) -> Route:
    """One Route per path, so that a 405 names every method the path has in `Allow`."""
    if len(endpoints) == 1:
        [(method, endpoint)] = endpoints.items()
        return Route(path, endpoint, methods=[method])

    async def dispatch(request: Request) -> Response:
        return await endpoints["GET" if request.method == "HEAD" else request.method](request)

    return Route(path, dispatch, methods=list(endpoints))


def build_routes(operations: list[Operation]) -> list[Route]:
    """Starlette routes for `operations`, in their order; operations sharing a path share a Route."""
    by_path: dict[str, dict[str, Handler]] = {}
    for op in operations:
        by_path.setdefault(op.path, {})[op.method] = _endpoint(op)
    return [_route(path, endpoints) for path, endpoints in by_path.items()]
