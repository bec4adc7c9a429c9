"""Task log operations: the ModelArts preview and jobtail's offset-idempotent append.

The preview carries a strong `ETag` (the log's offsets and the cap); a request whose
`If-None-Match` names it is answered 304 with no body, before any log byte is read.
"""

from __future__ import annotations

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from jobtail.core.types import Preview, TaskRef
from jobtail.http import access
from jobtail.http.context import context
from jobtail.http.errors import InvalidParameter
from jobtail.http.params import query_int
from jobtail.http.routing import Operation, Param

TASK_PATH = "/v2/{project_id}/training-jobs/{training_job_id}/tasks/{task_id}"


def task_ref(request: Request) -> TaskRef:
    p = request.path_params
    return TaskRef(p["project_id"], p["training_job_id"], p["task_id"])


def json_response(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def encode_preview(preview: Preview) -> bytes:
    """The ModelArts preview body (CONTRACT §10.1): what the store caches per unchanged log."""
    return orjson.dumps(
        {"content": preview.content, "current_size": preview.current_size, "full_size": preview.full_size}
    )


def entity_tags(header: str | None) -> frozenset[str]:
    """The entity tags an `If-None-Match` header lists, compared weakly (RFC 9110 §13.1.2: a
    `W/` prefix does not count); `*` stands for any."""
    if not header:
        return frozenset()
    return frozenset(tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip())


def not_modified(etag: str) -> Response:
    return Response(status_code=304, headers={"ETag": etag})


async def preview(request: Request) -> Response:
    store, ref = context(request).store, task_ref(request)
    tags = entity_tags(request.headers.get("if-none-match"))
    encoded, state = None, None
    if store.local_reads:  # a 304 or a cached body costs microseconds: less than the hop to a thread
        encoded, state = store.answered_preview(ref, tags)
    if encoded is None:  # encode from the state just read: a growing log misses every time
        encoded = await run_in_threadpool(store.encoded_preview, ref, tags, state)
    if encoded.body is None:
        return not_modified(encoded.etag)
    return Response(encoded.body, media_type="application/json", headers={"ETag": encoded.etag})


async def append(request: Request) -> Response:
    app = context(request)
    ref, body = task_ref(request), request.state.body
    offset = query_int(request.query_params, "offset", None, 0, 2**63 - 1)
    if not body:
        raise InvalidParameter("body", "The body holds no log bytes.")
    cap = app.settings.max_log_bytes
    appended = await run_in_threadpool(lambda: app.store.append(ref, body, offset, max_size=cap))
    return json_response(orjson.dumps({"full_size": appended.full_size}))


async def size(request: Request) -> Response:
    state = await run_in_threadpool(context(request).store.state, task_ref(request))
    return json_response(orjson.dumps({"full_size": state.end_offset}))


_PREVIEW_SCHEMA = {
    "type": "object",
    "properties": {
        "content": {"type": "string", "description": "The newest part of the log (at most 5 MiB), UTF-8."},
        "current_size": {"type": "integer", "description": "Log bytes that content covers."},
        "full_size": {"type": "integer", "description": "Bytes ever written to the log (its end offset)."},
    },
    "required": ["content", "current_size", "full_size"],
}

OPERATIONS = [
    Operation(
        "GET",
        TASK_PATH + "/logs/preview",
        preview,
        operation_id="ShowTrainingJobLogsPreview",
        summary="Preview the newest 5 MiB of a task's log (ETag; If-None-Match answers 304).",
        action=access.GET_JOB,
        response=_PREVIEW_SCHEMA,
        tags=("logs",),
        etag="strong",
    ),
    Operation(
        "POST",
        TASK_PATH + "/logs",
        append,
        operation_id="AppendTrainingJobTaskLog",
        summary="Append bytes to a task's log, idempotently by offset (jobtail extension).",
        action=access.APPEND_LOGS,
        query=(
            Param(
                "offset",
                "Offset at which the body's bytes start; the end of the log when omitted. "
                "Bytes repeating what is stored are acknowledged, not stored twice.",
                {"type": "integer", "minimum": 0},
            ),
        ),
        body_type="application/octet-stream",
        response={"type": "object", "properties": {"full_size": {"type": "integer"}}, "required": ["full_size"]},
        tags=("logs",),
    ),
    Operation(
        "GET",
        TASK_PATH + "/logs/size",
        size,
        operation_id="ShowTrainingJobTaskLogSize",
        summary="Where a task's log ends: where a shipper resumes appending (jobtail extension).",
        action=access.APPEND_LOGS,
        response={"type": "object", "properties": {"full_size": {"type": "integer"}}, "required": ["full_size"]},
        tags=("logs",),
    ),
]
