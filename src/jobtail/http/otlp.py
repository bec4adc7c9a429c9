"""OTLP/HTTP logs: `POST /v1/logs`, so OpenTelemetry log agents and SDKs can send task logs.

The body is an `ExportLogsServiceRequest` in the protobuf (`application/x-protobuf`) or JSON
(`application/json`) encoding, optionally `Content-Encoding: gzip` (one or more members) or
`deflate`, inflated to at most `max_body_bytes`. Each log
record's body becomes one line of the task log that its attributes name:

    training job  jobtail.training_job_id   (else the pod label k8s.pod.labels.jobtail.io/training-job-id)
    task          jobtail.task_id           (else k8s.pod.labels.jobtail.io/task-id, else the
                                             `worker-N` suffix of k8s.pod.name)
    project       X-Project-Id header, else jobtail.project_id

A record's own attributes take precedence over its resource's. A request names one project;
the caller needs `modelarts:trainJob:appendLogs` there (the `ingest` role). Everything is
checked before anything is stored: one record for an unknown job, an unknown task or another
project refuses the whole request with a ModelArts error and stores nothing. A string body is
stored as its UTF-8 bytes, a bytes body as is, other values as compact JSON; a newline is added
unless the body ends with one. The response is an empty `ExportLogsServiceResponse` in the
request's encoding.
"""

from __future__ import annotations

import base64
import re
import zlib
from collections.abc import Iterator
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from jobtail.core import ids
from jobtail.core.errors import LogTooLarge
from jobtail.core.store import LogStore
from jobtail.core.types import TaskRef
from jobtail.http import access
from jobtail.http.context import context
from jobtail.http.errors import InvalidParameter, PayloadTooLarge
from jobtail.http.routing import Operation

PROTOBUF, JSON = "application/x-protobuf", "application/json"
_MEDIA = {"application/x-protobuf": PROTOBUF, "application/protobuf": PROTOBUF, "application/json": JSON}

JOB_KEYS = ("jobtail.training_job_id", "k8s.pod.labels.jobtail.io/training-job-id")
TASK_KEYS = ("jobtail.task_id", "k8s.pod.labels.jobtail.io/task-id")
PROJECT_KEY = "jobtail.project_id"
_POD_TASK = re.compile(r"-(worker-\d+)$")
_GZIP_MAGIC = b"\x1f\x8b"
_INFLATE_PIECE = 256 * 1024
# Several gzip members are read (bgzip writes one per 64 KiB: 256 for a 16 MiB body); more than
# this many are refused, as each costs a fresh inflater while the request is handled.
MAX_GZIP_MEMBERS = 1024


def _media_type(request: Request) -> str:
    raw = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if raw not in _MEDIA:
        raise InvalidParameter("Content-Type", "Send OTLP logs as application/x-protobuf or application/json.")
    return _MEDIA[raw]


def _decompressed(request: Request, body: bytes) -> bytes:
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise InvalidParameter("Content-Encoding", "Use gzip, deflate or none.")
    return inflate(body, encoding, context(request).settings.max_body_bytes)


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """The content of a gzip or deflate (zlib) body, at most `limit` bytes (PayloadTooLarge past it,
    however small the body: a bomb stops at the limit). A gzip body may hold several members, read
    in turn (RFC 1952), up to `MAX_GZIP_MEMBERS`; anything that is not whole streams to its very
    end is InvalidParameter(body). The input is fed in pieces so that each member costs its size."""
    out = bytearray()
    view, at, members = memoryview(body), 0, 0
    while True:
        members += 1
        if members > MAX_GZIP_MEMBERS:
            raise InvalidParameter("body", f"The body holds more than {MAX_GZIP_MEMBERS} gzip members.")
        inflater = zlib.decompressobj(wbits=47)  # 32 + 15: a zlib or gzip header, detected
        while not inflater.eof:
            if at >= len(view):
                raise InvalidParameter("body", f"The body is not valid {encoding} data: it ends mid-stream.")
            piece = view[at : at + _INFLATE_PIECE]
            try:
                out += inflater.decompress(piece, limit + 1 - len(out))
            except zlib.error:
                raise InvalidParameter("body", f"The body is not valid {encoding} data.") from None
            if len(out) > limit:  # (below it, the output had room: the piece was consumed whole)
                raise PayloadTooLarge(limit)
            at += len(piece) - len(inflater.unused_data)
        if at == len(view):
            return bytes(out)
        if encoding != "gzip" or view[at : at + 2] != _GZIP_MAGIC:
            raise InvalidParameter("body", f"The body is not valid {encoding} data: bytes follow its end.")


def _decode(request: Request) -> Any:
    """The ExportLogsServiceRequest of the body; cached, as the project lookup decodes it first."""
    cached = getattr(request.state, "otlp", None)
    if cached is not None:
        return cached
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    media = _media_type(request)
    data = _decompressed(request, request.state.body)
    message = ExportLogsServiceRequest()
    try:
        if media == PROTOBUF:
            message.ParseFromString(data)
        else:
            json_format.Parse(data, message, ignore_unknown_fields=True)
    except (DecodeError, json_format.ParseError, UnicodeDecodeError, ValueError):
        raise InvalidParameter("body", "The body is not an OTLP ExportLogsServiceRequest.") from None
    request.state.otlp = message
    return message


def _strings(attributes: Any) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in attributes if kv.value.WhichOneof("value") == "string_value"}


def _resource_projects(message: Any) -> set[str]:
    named = set()
    for resource_logs in message.resource_logs:
        if project := _strings(resource_logs.resource.attributes).get(PROJECT_KEY):
            named.add(project)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                if project := _strings(record.attributes).get(PROJECT_KEY):
                    named.add(project)
    return named


def project_of(request: Request) -> str:
    """The request's project, for authorisation: `X-Project-Id`, else `jobtail.project_id`.

    An undecodable body names none here (its 400 comes after authentication); a caller with
    credentials who names no project at all gets a 400 saying how to name one.
    """
    header = request.headers.get("x-project-id", "").strip()
    if header:
        ids.check_project_id(header)
        return header
    try:
        named = _resource_projects(_decode(request))
    except InvalidParameter:
        return ""
    if len(named) > 1:
        raise InvalidParameter(PROJECT_KEY, "One OTLP request may name one project only.")
    if named:
        project = named.pop()
        ids.check_project_id(project)
        return project
    if "authorization" in request.headers or "x-auth-token" in request.headers:
        raise InvalidParameter(
            "project_id", f"Name the project in the X-Project-Id header or the {PROJECT_KEY} resource attribute."
        )
    return ""


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, kind)


def line_of(body: Any) -> bytes:
    """The bytes a record's body becomes: one line (a newline added unless it ends with one)."""
    kind = body.WhichOneof("value")
    data: bytes
    if kind == "string_value":
        data = body.string_value.encode()
    elif kind == "bytes_value":
        data = bytes(body.bytes_value)
    elif kind is None:
        data = b""
    elif kind == "bool_value":
        data = b"true" if body.bool_value else b"false"
    else:
        data = orjson.dumps(_value(body))
    return data if data.endswith(b"\n") else data + b"\n"


def _target(record_attrs: dict[str, str], resource_attrs: dict[str, str]) -> tuple[str, str, str | None]:
    def first(keys: tuple[str, ...]) -> str:
        for attrs in (record_attrs, resource_attrs):
            for key in keys:
                if attrs.get(key):
                    return attrs[key]
        return ""

    job, task = first(JOB_KEYS), first(TASK_KEYS)
    if not task and (pod := resource_attrs.get("k8s.pod.name")) and (m := _POD_TASK.search(pod)):
        task = m.group(1)
    if not job:
        raise InvalidParameter(JOB_KEYS[0], "A log record names no training job: set this resource attribute.")
    if not task:
        raise InvalidParameter(TASK_KEYS[0], "A log record names no task: set this resource attribute.")
    return job, task, record_attrs.get(PROJECT_KEY) or resource_attrs.get(PROJECT_KEY)


def _records(message: Any) -> Iterator[tuple[tuple[str, str, str | None], bytes]]:
    for resource_logs in message.resource_logs:
        resource_attrs = _strings(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                yield _target(_strings(record.attributes), resource_attrs), line_of(record.body)


def _store(store: LogStore, project: str, message: Any, cap: int) -> None:
    """Check every record's target, then append."""
    batches: dict[TaskRef, list[bytes]] = {}
    for (job, task, named), line in _records(message):
        if named is not None and named != project:
            raise InvalidParameter(PROJECT_KEY, f"The request is for project {project}; a record names {named}.")
        batches.setdefault(TaskRef(project, job, task), []).append(line)
    data = {ref: b"".join(lines) for ref, lines in batches.items()}
    for ref, chunk in data.items():  # every target exists and has room, before anything is stored
        end = store.state(ref).end_offset
        if cap and end + len(chunk) > cap:
            raise LogTooLarge(cap, end)
    for ref, chunk in data.items():
        store.append(ref, chunk, max_size=cap)


async def export(request: Request) -> Response:
    message = _decode(request)
    project = request.headers.get("x-project-id", "").strip() or next(iter(_resource_projects(message)), "")
    app = context(request)
    await run_in_threadpool(_store, app.store, project, message, app.settings.max_log_bytes)
    if _media_type(request) == PROTOBUF:
        return Response(b"", media_type=PROTOBUF)  # an empty ExportLogsServiceResponse
    return Response(b"{}", media_type=JSON)


OPERATIONS = [
    Operation(
        "POST",
        "/v1/logs",
        export,
        operation_id="ExportLogs",
        summary="OTLP/HTTP logs: each record's body becomes a line of the task log its attributes name.",
        action=access.APPEND_LOGS,
        body_type=PROTOBUF,
        response={"type": "object", "description": "ExportLogsServiceResponse (empty)."},
        response_types=(PROTOBUF, JSON),  # the request's encoding
        tags=("ingest",),
        project=project_of,
    ),
]
