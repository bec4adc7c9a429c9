"""The OpenAPI 3.1 document, generated from the same Operation table that builds the routes.

It is as strict as the server: path ids carry the patterns `jobtail.core.ids` checks, every
response carries `X-Request-Id`, errors have the contract's body, a 429 its `Retry-After`; the
test suite runs schemathesis against it (tests/http/test_openapi.py).
"""

from __future__ import annotations

import re
from typing import Any

from jobtail import __version__
from jobtail.http.routing import Operation

_ID = r"^[A-Za-z0-9-]{1,64}$"  # as jobtail.core.ids checks project and job ids
_PATH_PARAMS = {
    "project_id": ("Project ID: 1-64 letters, digits and hyphens.", _ID),
    "training_job_id": ("Training job ID: 1-64 letters, digits and hyphens.", _ID),
    "task_id": ("Task name from status.tasks: worker-0, worker-1, ...", r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"),
}

_ERROR = {
    "type": "object",
    "description": "A ModelArts or API Gateway error (CONTRACT §6).",
    "properties": {
        "error_code": {"type": "string", "pattern": r"^[A-Za-z]+\.[0-9]+$"},
        "error_msg": {"type": "string", "minLength": 1},
        "error_solution": {"type": "string"},
        "request_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "full_size": {"type": "integer", "minimum": 0,
                      "description": "Where the log ends (append conflicts, the size cap)."},
        "max_log_bytes": {"type": "integer", "minimum": 1},
    },
    "required": ["error_code", "error_msg", "request_id"],
}

_REQUEST_ID = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}

# Error statuses every guarded operation may answer, and what they mean.
_GUARDED_ERRORS = {
    "400": "Invalid request: a malformed id or parameter, an unknown job (ModelArts codes).",
    "401": "Missing or bad credentials (APIGW.0301).",
    "403": "The caller's role does not allow the action here (ModelArts.0108).",
    "404": "The project named by X-Project-Id or the credential is not the path's (ModelArts.2786).",
}


def _error(description: str, **headers: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {**_REQUEST_ID, **headers},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _body_schema(op: Operation, media: str) -> dict[str, Any]:
    """`op.response` where it applies: a JSON body, or each event of a Server-Sent Events stream
    (as OpenAPI before 3.2 reads a schema of `text/event-stream`); other bodies are bytes."""
    if op.response is not None and ("json" in media or media == "text/event-stream"):
        return op.response
    return {"type": "string"}


def _responses(op: Operation) -> dict[str, Any]:
    success: dict[str, Any] = {"description": "Success.", "headers": _REQUEST_ID}
    if op.response is not None or op.response_types != ("application/json",):
        success["content"] = {media: {"schema": _body_schema(op, media)} for media in op.response_types}
    responses: dict[str, Any] = {str(op.status): success}
    if op.etag is not None:
        tag = {"required": op.etag == "strong", "schema": {"type": "string"},
               "description": "Entity tag of the body: send it in If-None-Match to get 304 while it holds."}
        success["headers"] = {**_REQUEST_ID, "ETag": tag}
        responses["304"] = {"description": "Not modified: the body the caller holds is current (no body).",
                            "headers": {**_REQUEST_ID, "ETag": {**tag, "required": True}}}
    if op.action is not None:
        responses.update((status, _error(text)) for status, text in _GUARDED_ERRORS.items())
    if op.body_type is not None:
        responses["413"] = _error("The body is over max_body_bytes (APIGW.0201).")
    if op.action is not None or op.body_type is not None:
        retry = {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"},
                 "description": "Seconds after which to try again."}
        responses["429"] = _error("Throttled (APIGW.0308): request rate, open streams or unproven bodies.",
                                  **{"Retry-After": retry})
    responses["default"] = _error("Any other error, e.g. 409 conflicts and 500 ModelArts.0010.")
    return responses


def _operation(op: Operation) -> dict[str, Any]:
    params: list[dict[str, Any]] = []
    for name in re.findall(r"{(\w+)}", op.path):
        description, pattern = _PATH_PARAMS.get(name, (name, None))
        schema = {"type": "string"} if pattern is None else {"type": "string", "pattern": pattern}
        params.append({"name": name, "in": "path", "required": True, "description": description, "schema": schema})
    params += [
        {"name": p.name, "in": "query", "required": p.required, "description": p.description, "schema": p.schema}
        for p in op.query
    ]
    if op.etag is not None:
        params.append({"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
                       "description": "Entity tags held (or *): answered 304 if the body's is among them."})
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": list(op.tags),
        "parameters": params,
        "responses": _responses(op),
    }
    if op.action is not None:
        doc["x-modelarts-action"] = op.action
        doc["security"] = [{"token": []}, {"aksk": []}]
    else:
        doc["security"] = []
    if op.body_type is not None:
        body_schema = {"type": "object"} if "json" in op.body_type else {"type": "string", "format": "binary"}
        doc["requestBody"] = {"required": op.body_required, "content": {op.body_type: {"schema": body_schema}}}
    return doc


def openapi_document(operations: list[Operation]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jobtail",
            "version": __version__,
            "description": "Logs of training jobs behind the ModelArts v2 training-job API.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR},
            "headers": {
                "X-Request-Id": {"required": True, "description": "This request's id, also in error bodies.",
                                 "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}},
            },
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"},
                "aksk": {"type": "apiKey", "in": "header", "name": "Authorization",
                         "description": "SDK-HMAC-SHA256 signature, as the Huawei Cloud SDKs send it."},
            },
        },
    }
