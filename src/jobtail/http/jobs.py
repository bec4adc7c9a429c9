"""Training job operations (CONTRACT §5): create, show, search, tasks, terminate, delete, events."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from jobtail.core.jobs import JobService
from jobtail.http import access
from jobtail.http.context import context
from jobtail.http.errors import ApiError
from jobtail.http.job_views import (
    parse_event_query,
    parse_job,
    parse_search,
    render_event,
    render_job,
    render_search,
)
from jobtail.http.routing import Operation, Param

JOBS = "/v2/{project_id}/training-jobs"
JOB = JOBS + "/{training_job_id}"


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _body(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(request.state.body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "ModelArts.2787", "Invalid JSON request body.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "ModelArts.2787", "Invalid JSON request body.")
    return body


def _service(request: Request) -> JobService:
    return context(request).jobs


def _wake_executor(request: Request) -> None:
    executor = context(request).services.executor
    if executor is not None:
        executor.wake()


async def create(request: Request) -> Response:
    spec = parse_job(_body(request))
    executor = context(request).settings.executor
    job = await run_in_threadpool(_service(request).create, request.path_params["project_id"], spec, executor)
    _wake_executor(request)
    return _json(render_job(job), 201)


async def show(request: Request) -> Response:
    p = request.path_params
    job = await run_in_threadpool(_service(request).get, p["project_id"], p["training_job_id"])
    return _json(render_job(job))


async def search(request: Request) -> Response:
    body = _body(request) if request.state.body else {}
    query = parse_search(body)
    total, count, items = await run_in_threadpool(_service(request).search, request.path_params["project_id"], query)
    return _json(render_search(body, query, total, count, items))


async def tasks(request: Request) -> Response:
    p = request.path_params
    job = await run_in_threadpool(_service(request).get, p["project_id"], p["training_job_id"])
    local = job.executor == "local"
    return _json([
        {"task": task, "ip": "127.0.0.1" if local else "", "host_ip": "127.0.0.1" if local else "", "schedule_count": 1}
        for task in job.tasks
    ])


async def actions(request: Request) -> Response:
    action = _body(request).get("action_type")
    if action != "terminate":
        raise ApiError(400, "ModelArts.2812", f"Unsupported action type:{action}")
    p = request.path_params
    job = await run_in_threadpool(_service(request).terminate, p["project_id"], p["training_job_id"])
    _wake_executor(request)
    return _json(render_job(job), 202)


async def delete(request: Request) -> Response:
    p = request.path_params
    await run_in_threadpool(_service(request).delete, p["project_id"], p["training_job_id"])
    _wake_executor(request)
    return Response(status_code=202)


async def events(request: Request) -> Response:
    p = request.path_params
    filters = parse_event_query(request.query_params)
    total, found = await run_in_threadpool(_service(request).events, p["project_id"], p["training_job_id"], **filters)
    return _json({
        "total": total,
        "limit": filters["limit"],
        "offset": filters["offset"],
        "order": "desc" if filters["descending"] else "asc",
        "events": [render_event(e) for e in found],
    })


_EPOCH_MS = {"type": "integer", "minimum": 0, "maximum": 10**15}
_JOB_SCHEMA = {"type": "object", "description": "A ModelArts training job (kind, metadata, algorithm, spec, status)."}

OPERATIONS = [
    Operation("POST", JOBS, create, operation_id="CreateTrainingJob", summary="Create a training job.",
              action=access.CREATE_JOB, body_type="application/json", status=201, response=_JOB_SCHEMA,
              tags=("jobs",)),
    Operation("GET", JOB, show, operation_id="ShowTrainingJobDetails", summary="Show a training job.",
              action=access.GET_JOB, response=_JOB_SCHEMA, tags=("jobs",)),
    Operation("DELETE", JOB, delete, operation_id="DeleteTrainingJob",
              summary="Delete a training job and its logs.", action=access.DELETE_JOB, status=202, tags=("jobs",)),
    Operation("POST", JOB + "/actions", actions, operation_id="StopTrainingJob",
              summary='Terminate a training job ({"action_type": "terminate"}).', action=access.UPDATE_JOB,
              body_type="application/json", status=202, response=_JOB_SCHEMA, tags=("jobs",)),
    Operation("POST", "/v2/{project_id}/training-job-searches", search, operation_id="ListTrainingJobs",
              summary="Search the project's training jobs (no body: the first page of all).", action=access.LIST_JOBS,
              body_type="application/json", body_required=False, response={"type": "object"}, tags=("jobs",)),
    Operation("GET", JOB + "/tasks", tasks, operation_id="ListTrainingJobTasks",
              summary="List a training job's tasks (a bare JSON array).", action=access.LIST_JOBS,
              response={"type": "array", "items": {"type": "object"}}, tags=("jobs",)),
    Operation("GET", JOB + "/events", events, operation_id="ListTrainingJobEvents",
              summary="A training job's events.", action=access.GET_JOB,
              query=(Param("offset", "Events to skip.", {"type": "integer", "minimum": 0, "maximum": 10**9}),
                     Param("limit", "Events to return (1-100, default 50).",
                           {"type": "integer", "minimum": 1, "maximum": 100}),
                     Param("order", "asc (default) or desc by time.", {"type": "string", "enum": ["asc", "desc"]}),
                     Param("level", "Info, Warning or Error.",
                           {"type": "string", "enum": ["Info", "Warning", "Error"]}),
                     Param("pattern", "Substring the message must contain.", {"type": "string", "maxLength": 256}),
                     Param("start_time", "Epoch ms; with end_time.", _EPOCH_MS),
                     Param("end_time", "Epoch ms; with start_time.", _EPOCH_MS)),
              response={"type": "object"}, tags=("jobs",)),
]
