"""Task log operations: the ModelArts preview and jobtail's offset-idempotent append."""

from __future__ import annotations

import orjson
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from jobtail.core.errors import InvalidParameter
from jobtail.core.store import LogStore
from jobtail.core.types import TaskRef
from jobtail.http import access
from jobtail.http.maintenance import seal_soon
from jobtail.http.params import query_int
from jobtail.http.preview_cache import PreviewCache
from jobtail.http.routing import Operation, Param

TASK_PATH = "/v2/{project_id}/training-jobs/{training_job_id}/tasks/{task_id}"


def task_ref(request: Request) -> TaskRef:
    p = request.path_params
    return TaskRef(p["project_id"], p["training_job_id"], p["task_id"])


def json_response(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def _preview_body(store: LogStore, cache: PreviewCache, ref: TaskRef) -> bytes:
    state = store.state(ref)
    log = (ref.job_id, ref.task_id)
    body = cache.get(log, state.start_offset, state.end_offset)
    if body is None:
        preview = store.preview(ref, state)
        body = orjson.dumps(
            {"content": preview.content, "current_size": preview.current_size, "full_size": preview.full_size}
        )
        cache.put(log, state.start_offset, state.end_offset, body)
    return body


async def preview(request: Request) -> Response:
    state = request.app.state
    return json_response(await run_in_threadpool(_preview_body, state.store, state.preview_cache, task_ref(request)))


async def append(request: Request) -> Response:
    store: LogStore = request.app.state.store
    ref, body = task_ref(request), request.state.body
    offset = query_int(request.query_params, "offset", None, 0, 2**63 - 1)
    if not body:
        raise InvalidParameter("body", "The body holds no log bytes.")
    cap = request.app.state.settings.max_log_bytes
    appended = await run_in_threadpool(lambda: store.append(ref, body, offset, max_size=cap))
    seal = BackgroundTask(run_in_threadpool, seal_soon, store, [appended.log_id]) if appended.seal_due else None
    return Response(
        orjson.dumps({"full_size": appended.full_size}), media_type="application/json", background=seal
    )


async def size(request: Request) -> Response:
    state = await run_in_threadpool(request.app.state.store.state, task_ref(request))
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
        summary="Preview the newest 5 MiB of a task's log.",
        action=access.GET_JOB,
        response=_PREVIEW_SCHEMA,
        tags=("logs",),
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
