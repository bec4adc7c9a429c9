"""ModelArts shapes for jobs: parsing a job body into a JobSpec, rendering JobRecords, and
parsing search and event queries."""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime
from typing import Any

from jobtail.core.jobs import ALL_PHASES
from jobtail.core.types import JobEvent, JobQuery, JobRecord, JobSpec, LogExport, RunningRecord
from jobtail.http.errors import ApiError, InvalidParameter, InvalidQueryParameter
from jobtail.http.params import query_choice, query_int

JOB_KINDS = ("job", "federated_pool_job", "edge_job", "hetero_job", "mrs_job", "autosearch_job",
             "diag_job", "visualization_job")
MAX_ENVIRONMENTS = 100


def parse_job(document: dict[str, Any]) -> JobSpec:
    """The JobSpec of a ModelArts CreateTrainingJob body (its form: types, the kind, the
    environment's size); the job rules themselves are `JobService.create`'s. The body is kept
    as given, unknown fields included."""
    kind = document.get("kind", "job")
    if kind not in JOB_KINDS:
        raise InvalidParameter("kind")
    metadata = document.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        raise InvalidParameter("metadata.name")
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise InvalidParameter("metadata.annotations", "It must map strings to strings.")
    algorithm = document.get("algorithm") or {}
    if not isinstance(algorithm, dict):
        raise InvalidParameter("algorithm")
    environments = algorithm.get("environments") or {}
    if not isinstance(environments, dict) or len(environments) > MAX_ENVIRONMENTS or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in environments.items()
    ):
        raise InvalidParameter("algorithm.environments")
    command = algorithm.get("command")
    working_dir = algorithm.get("working_dir")
    if working_dir is not None and not isinstance(working_dir, str):
        raise InvalidParameter("algorithm.working_dir", "It must be a string.")
    spec = document.get("spec") or {}
    resource = spec.get("resource") or {} if isinstance(spec, dict) else {}
    count = resource.get("node_count", 1) if isinstance(resource, dict) else 1
    if isinstance(count, bool) or not isinstance(count, int):
        raise InvalidParameter("spec.resource.node_count")
    return JobSpec(
        name=metadata["name"],
        node_count=count,
        command=command if isinstance(command, str) else None,
        working_dir=working_dir or None,
        environments=dict(environments),
        document=document,
        annotations=dict(annotations),
        log_export=_log_export(spec),
    )


def _log_export(spec: Any) -> LogExport:
    export = (spec.get("log_export_path") if isinstance(spec, dict) else None) or {}
    if not isinstance(export, dict):
        raise InvalidParameter("spec.log_export_path")
    for key in ("host_path", "obs_url"):
        if not isinstance(export.get(key) or "", str):
            raise InvalidParameter(f"spec.log_export_path.{key}", "It must be a string.")
    return LogExport(host_path=export.get("host_path") or "", obs_url=export.get("obs_url") or "")


def render_record(record: RunningRecord) -> dict[str, Any]:
    """A ModelArts RunningRecord, with jobtail's `log_starts`: where the attempt begins in each
    task log (`{"worker-0": {"offset": 0, "line": 1}}`)."""
    return {"start_at": record.start_at, "end_at": record.end_at, "start_type": record.start_type,
            "end_reason": record.end_reason, "end_related_task": record.end_related_task,
            "end_recover": record.end_recover,
            "log_starts": {task: {"offset": p.offset, "line": p.line} for task, p in record.log_starts.items()}}


def _mapping(document: dict[str, Any], key: str) -> dict[str, Any]:
    """`document[key]` when it is an object, else a new empty one."""
    value = document.get(key)
    return value if isinstance(value, dict) else {}


def render_job(job: JobRecord, now_ms: int | None = None) -> dict[str, Any]:
    """The job as ModelArts returns it: the stored body (unknown fields included) plus the
    server's metadata and status."""
    doc = copy.deepcopy(job.document)
    metadata = _mapping(doc, "metadata")
    metadata.update(id=job.id, name=job.name, create_time=job.created_at)
    metadata.setdefault("workspace_id", "0")
    metadata.setdefault("description", "")
    algorithm = _mapping(doc, "algorithm")
    if isinstance(algorithm.get("environments"), dict):  # a map in requests, a list of maps in responses
        algorithm["environments"] = [{k: v} for k, v in algorithm["environments"].items()]
    spec = _mapping(doc, "spec")
    resource = _mapping(spec, "resource")
    resource["node_count"] = len(job.tasks)
    spec["resource"] = resource
    spec.setdefault("log_export_path", {})
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    duration = ((job.end_time or now) - job.start_time) if job.start_time else 0
    status = {
        "phase": job.phase,
        "secondary_phase": job.secondary_phase,
        "duration": max(0, duration),
        "node_count_metrics": None,
        "tasks": list(job.tasks),
        "start_time": job.start_time,
        "task_statuses": [{"task": t.task, "exit_code": t.exit_code, "message": t.message} for t in job.task_statuses],
        "running_records": [render_record(r) for r in job.running_records],
    }
    return {**doc, "kind": doc.get("kind", "job"), "metadata": metadata, "algorithm": algorithm, "spec": spec,
            "status": status}


def _int(body: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = body.get(key, default)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidParameter(key)
    return value


def parse_search(body: dict[str, Any]) -> JobQuery:
    """A ListTrainingJobs body (`offset` is a page number, as the ModelArts docs say)."""
    limit = _int(body, "limit", 10, 1, 50)
    page = _int(body, "offset", 0, 0, 1_000_000)
    sort_by = body.get("sort_by", "create_time")
    if sort_by not in ("create_time", "name", "phase"):
        raise ApiError(400, "ModelArts.2790", "Unsupported sorting item.")
    order = body.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidParameter("order")
    query: dict[str, Any] = {}
    filters = body.get("filters") or []
    if not isinstance(filters, list):
        raise InvalidParameter("filters")
    for item in filters:
        key, operator, values = (
            (item.get("key"), item.get("operator"), item.get("value")) if isinstance(item, dict) else (None, None, None)
        )
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ApiError(400, "ModelArts.2809", f"Unsupported condition value ({values})")
        expected = {"name": "like", "phase": "in", "create_time": "between"}
        if key not in expected:
            raise ApiError(400, "ModelArts.2807", f"Unsupported condition key ({key})")
        if operator != expected[key]:
            raise ApiError(400, "ModelArts.2808", f"Unsupported condition operator ({operator})")
        if key == "name" and len(values) == 1:
            query["name_like"] = values[0]
        elif key == "phase" and values and all(v in ALL_PHASES for v in values):
            query["phases"] = tuple(values)
        elif key == "create_time" and len(values) == 2 and all(v.isdigit() for v in values):
            query["created_from"], query["created_to"] = int(values[0]), int(values[1])
        else:
            raise ApiError(400, "ModelArts.2809", f"Unsupported condition value ({values})")
    return JobQuery(sort_by=sort_by, descending=order == "desc", page=page, limit=limit, **query)


def render_search(body: dict[str, Any], query: JobQuery, total: int, count: int, items: list[JobRecord]) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "total": total,
        "count": count,
        "limit": query.limit,
        "offset": query.page,
        "sort_by": query.sort_by,
        "order": "desc" if query.descending else "asc",
        "group_by": body.get("group_by", ""),
        "workspace_id": body.get("workspace_id", "0"),
        "ai_project": "default-ai-project",
        "train_type": body.get("train_type", "job"),
        "items": [render_job(job, now) for job in items],
    }


def parse_event_query(params: Any) -> dict[str, Any]:
    """ListTrainingJobEvents query parameters → keyword arguments of `JobService.events`."""
    order = query_choice(params, "order", "asc", ("asc", "desc"))
    level = params.get("level")
    if level is not None and level not in ("Info", "Warning", "Error"):
        raise InvalidQueryParameter("level")
    pattern = params.get("pattern")
    if pattern is not None and len(pattern) > 256:
        raise InvalidQueryParameter("pattern")
    start, end = params.get("start_time"), params.get("end_time")
    if (start is None) != (end is None):
        raise InvalidQueryParameter("start_time")
    filters: dict[str, Any] = {
        "offset": query_int(params, "offset", 0, 0, 10**9),
        "limit": query_int(params, "limit", 50, 1, 100),
        "descending": order == "desc",
        "level": level,
        "pattern": pattern,
    }
    if start is not None:
        filters["start"] = query_int(params, "start_time", 0, 0, 10**15)
        filters["end"] = query_int(params, "end_time", 0, 0, 10**15)
    return filters


def iso_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def render_event(event: JobEvent) -> dict[str, str]:
    return {"time": iso_time(event.time), "level": event.level, "message": event.message, "source": event.source}
