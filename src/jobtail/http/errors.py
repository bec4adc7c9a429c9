"""The one place where errors become ModelArts / API Gateway error responses.

Bodies are `{"error_code", "error_msg", "error_solution"?, "request_id"}`; an OffsetConflict
also carries `full_size` so that a writer can resume. Every response, error or not, carries
`X-Request-Id` (added by `RequestIdMiddleware`).
"""

from __future__ import annotations

import logging

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from jobtail.auth.authenticator import LOCKED_AK, AuthFailed, NotAllowed, ProjectMismatch
from jobtail.core import errors as core

log = logging.getLogger("jobtail.http")

_SOLUTIONS = {
    "ModelArts.2764": "Check the validity of the parameter in the request.",
    "ModelArts.2775": "Check whether the training job information in the request is valid.",
    "ModelArts.2788": "Check the request parameter.",
    "ModelArts.2796": "Check whether the job status is valid.",
    "ModelArts.2818": "Please view the log after the log is generated.",
    "ModelArts.2819": "Please select obs url to upload your logs when creating training jobs.",
    "Jobtail.0409": "Ask for the log's full_size and resend the bytes from there.",
    "ModelArts.2815": "Ask the operator to raise max_log_bytes, or write to another task log.",
    "Jobtail.0507": "Ask the operator to free space on (or make writable) the log store; writes then succeed again.",
}


class ApiError(Exception):
    """An error response decided in the HTTP layer itself (authentication, routing, bodies)."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                 **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}  # e.g. Retry-After on a 429
        self.extra = extra


class InvalidParameter(ApiError):
    """A path, body or header parameter is malformed: 400 `ModelArts.2788` naming it."""

    def __init__(self, param: str, reason: str = "") -> None:
        super().__init__(400, "ModelArts.2788", f"Invalid parameter({param})." + (f" {reason}" if reason else ""))
        self.param = param


class InvalidQueryParameter(ApiError):
    """A query parameter is malformed or out of range: 400 `ModelArts.2764` naming it."""

    def __init__(self, param: str, reason: str = "") -> None:
        super().__init__(400, "ModelArts.2764", f"Invalid query parameter ({param})." + (f" {reason}" if reason else ""))
        self.param = param


class PayloadTooLarge(ApiError):
    """A request body (as sent, or inflated) is over `limit` bytes: 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, "APIGW.0201", f"Request entity too large. (limit {limit} bytes)")
        self.limit = limit


# The API's names for what domain errors are about.
ID_PARAMETERS = {"project": "project_id", "job": "training_job_id", "task": "task_id"}
JOB_FIELDS = {"name": "metadata.name", "node_count": "spec.resource.node_count", "command": "algorithm.command",
              "working_dir": "algorithm.working_dir", "environments": "algorithm.environments",
              "annotations": "metadata.annotations", "log_export_path.host_path": "spec.log_export_path.host_path",
              "log_export_path.obs_url": "spec.log_export_path.obs_url"}
_AUTH_PREFIX = "Incorrect IAM authentication information: "


def error_response(request: Request, status: int, code: str, message: str, **extra: object) -> Response:
    body: dict[str, object] = {"error_code": code, "error_msg": message}
    if code in _SOLUTIONS:
        body["error_solution"] = _SOLUTIONS[code]
    body.update(extra)
    body["request_id"] = request_id(request)
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def _domain(exc: core.JobtailError) -> tuple[int, str, str, dict[str, object]]:
    """Status, code, message and extra body fields for a domain error."""
    match exc:
        case core.InvalidId():
            return 400, "ModelArts.2788", f"Invalid parameter({ID_PARAMETERS[exc.kind]}).", {}
        case core.TaskNotFound():
            return 400, "ModelArts.2788", "Invalid parameter(task_id).", {}
        case core.InvalidJob():
            reason = f" {exc.reason}" if exc.reason else ""
            return 400, "ModelArts.2788", f"Invalid parameter({JOB_FIELDS.get(exc.field, exc.field)}).{reason}", {}
        case core.InvalidInstant() | core.InvalidPattern():  # (the handlers name the parameter first)
            return 400, "ModelArts.2788", exc.message, {}
        case core.JobNotFound():
            return 400, "ModelArts.2775", exc.message, {}
        case core.DuplicateJobName():
            return 400, "ModelArts.2751", exc.message, {}
        case core.LogNotGenerated():
            return 400, "ModelArts.2818", exc.message, {}
        case core.LogCleared():
            return 400, "ModelArts.2819", exc.message, {}
        case core.JobNotTerminable():
            return 409, "ModelArts.2796", exc.message, {}
        case core.OffsetConflict():
            return 409, "Jobtail.0409", exc.message, {"full_size": exc.full_size}
        case core.LogTooLarge():
            return 400, "ModelArts.2815", exc.message, {"full_size": exc.full_size, "max_log_bytes": exc.limit}
        case core.StorageFull() | core.StorageNotWritable():  # (the maintenance thread reports it to the log)
            return 507, "Jobtail.0507", exc.message, {}
    log.error("storage error: %s (%s)", exc.message, getattr(exc, "hint", ""))
    return 500, "ModelArts.0010", "Internal error.", {}


async def on_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, core.JobtailError)
    status, code, message, extra = _domain(exc)
    return error_response(request, status, code, message, **extra)


async def on_auth_error(request: Request, exc: Exception) -> Response:
    """What authentication refused (`jobtail.auth.authenticator`), as API Gateway answers it."""
    match exc:
        case AuthFailed():
            message = exc.reason if exc.reason == LOCKED_AK else _AUTH_PREFIX + exc.reason
            return error_response(request, 401, "APIGW.0301", message)
        case ProjectMismatch():
            return error_response(request, 404, "ModelArts.2786", f"The project ID ({exc.project_id}) in the request "
                                  f"does not match that({exc.other}) in the {exc.source}.")
        case NotAllowed():
            return error_response(request, 403, "ModelArts.0108",
                                  f"You are not authorized to perform the ({exc.action}) operation.")
    raise exc


async def on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    response = error_response(request, exc.status, exc.code, exc.message, **exc.extra)
    response.headers.update(exc.headers)
    return response


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        response = error_response(request, 405, "ModelArts.2803", "Method not allowed.")
        response.headers.update(exc.headers or {})  # Allow: the path's methods
        return response
    if exc.status_code == 404:
        return error_response(
            request, 404, "APIGW.0101", "The API does not exist or has not been published in the environment."
        )
    return error_response(request, exc.status_code, "APIGW.0201", "API request error.")


async def on_client_disconnect(request: Request, exc: Exception) -> Response:
    """The client went away before its request was read: nobody will read the answer."""
    log.info("client went away before %s %s was read", request.method, request.url.path)
    return Response(status_code=400)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request, 500, "ModelArts.0010", "Internal error.")


EXCEPTION_HANDLERS = {
    core.JobtailError: on_domain_error,
    ApiError: on_api_error,
    AuthFailed: on_auth_error,
    ProjectMismatch: on_auth_error,
    NotAllowed: on_auth_error,
    HTTPException: on_http_exception,
    ClientDisconnect: on_client_disconnect,
    Exception: on_unexpected,
}
