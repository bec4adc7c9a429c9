"""The OpenAPI 3.1 document, generated from the same Operation table that builds the routes."""

from __future__ import annotations

import re
from typing import Any

from jobtail import __version__
from jobtail.http.routing import Operation

_PATH_PARAMS = {
    "project_id": "Project ID: 1-64 letters, digits and hyphens.",
    "training_job_id": "Training job ID.",
    "task_id": "Task name from status.tasks: worker-0, worker-1, ...",
}

_ERROR = {
    "type": "object",
    "properties": {
        "error_code": {"type": "string"},
        "error_msg": {"type": "string"},
        "error_solution": {"type": "string"},
        "request_id": {"type": "string"},
    },
    "required": ["error_code", "error_msg"],
}


def _operation(op: Operation) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "description": _PATH_PARAMS.get(name, name),
         "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", op.path)
    ]
    params += [
        {"name": p.name, "in": "query", "required": p.required, "description": p.description, "schema": p.schema}
        for p in op.query
    ]
    success: dict[str, Any] = {"description": "Success."}
    if op.response is not None:
        success["content"] = {"application/json": {"schema": op.response}}
    error = {"description": "Error.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": list(op.tags),
        "parameters": params,
        "responses": {str(op.status): success, "default": error},
    }
    if op.action is not None:
        doc["x-modelarts-action"] = op.action
        doc["security"] = [{"token": []}, {"aksk": []}]
    else:
        doc["security"] = []
    if op.body_type is not None:
        body_schema = {"type": "string", "format": "binary"} if "octet" in op.body_type else {"type": "object"}
        doc["requestBody"] = {"required": True, "content": {op.body_type: {"schema": body_schema}}}
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
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"},
                "aksk": {"type": "apiKey", "in": "header", "name": "Authorization",
                         "description": "SDK-HMAC-SHA256 signature, as the Huawei Cloud SDKs send it."},
            },
        },
    }
