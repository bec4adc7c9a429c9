"""ShowTrainingJobLogsFromAom: the line-paged log API (CONTRACT §3 and §10.2).

A page whose lines all lie in sealed segments never changes (only `full_size`, the log's end,
moves on), so it carries a weak `ETag`; `If-None-Match` with it answers 304 with no body.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from jobtail.core.lines import Line
from jobtail.core.store import LogStore
from jobtail.core.timespec import format_instant
from jobtail.core.types import LogState, TaskRef
from jobtail.http import access
from jobtail.http.context import context
from jobtail.http.logs import entity_tags, not_modified
from jobtail.http.params import query_bool, query_choice, query_instant, query_int
from jobtail.http.routing import Operation, Param


def page_etag(state: LogState, page: list[Line], descending: bool, timestamps: bool, collapse_cr: bool) -> str | None:
    """A weak entity tag for a page wholly in the sealed range (None otherwise): its first and
    last line numbers, order, timestamps and collapse_cr decide its lines, and the start offset
    the text of a first line that retention cut."""
    if not page:
        return None
    newest = page[0] if descending else page[-1]
    if newest.truncated or newest.offset + len(newest.text) + 1 > state.sealed_offset:
        return None
    first, last = page[0].number, page[-1].number
    flags = ("d" if descending else "a") + ("t" if timestamps else "") + ("c" if collapse_cr else "")
    return f'W/"{state.start_offset:x}.{first:x}.{last:x}.{flags}"'


def _page(store: LogStore, ref: TaskRef, params: dict[str, Any], tags: frozenset[str]) -> tuple[str | None, bytes | None]:
    state = store.state(ref)
    page = store.lines(state, **params["page"])
    etag = page_etag(state, page, params["page"]["descending"], params["timestamps"], params["page"]["collapse_cr"])
    if etag is not None and ("*" in tags or etag.removeprefix("W/") in tags):
        return etag, None
    texts = [line.text.decode("utf-8", "replace") for line in page]
    if params["timestamps"]:
        ordered = sorted(line.offset for line in page)
        times = dict(zip(ordered, store.arrival_times(state, ordered), strict=True))
        texts = [f"{format_instant(times[line.offset])} {text}" for line, text in zip(page, texts, strict=True)]
    base = params["base_line"]
    return etag, orjson.dumps({
        "start_line": str(page[0].number) if page else base,
        "end_line": str(page[-1].number) if page else base,
        "lines": len(page),
        "content": "\n".join(texts),
        "full_size": state.end_offset,  # jobtail: the snapshot's end, where a follow can resume
    })


async def lines(request: Request) -> Response:
    q, p = request.query_params, request.path_params
    base = query_int(q, "base_line", None, 0, 10**18)
    params = {
        "page": {
            "base_line": base,
            "count": query_int(q, "lines", 50, 1, 500),
            "descending": query_choice(q, "order", "desc", ("asc", "desc")) == "desc",
            "since": query_instant(q, "since"),
            "until": query_instant(q, "until"),
            "collapse_cr": query_bool(q, "collapse_cr"),
        },
        "timestamps": query_bool(q, "timestamps"),
        "base_line": "" if base is None else str(base),
    }
    ref = TaskRef(p["project_id"], p["training_job_id"], p["task_id"])
    tags = entity_tags(request.headers.get("if-none-match"))
    etag, body = await run_in_threadpool(_page, context(request).store, ref, params, tags)
    if body is None and etag is not None:
        return not_modified(etag)
    return Response(body, media_type="application/json", headers={"ETag": etag} if etag else None)


OPERATIONS = [
    Operation(
        "GET",
        "/v2/{project_id}/training-jobs/{training_job_id}/logs/{task_id}",
        lines,
        operation_id="ShowTrainingJobLogsFromAom",
        summary="A page of a task's log lines, forwards or backwards from a line number.",
        action=access.GET_LOGS,
        query=(
            Param("base_line", "Line number to continue from (excluded); absent: the newest (desc) or oldest (asc) lines.",
                  {"type": "string", "pattern": "^[0-9]+$"}),
            Param("lines", "Lines to return, 1-500 (default 50).", {"type": "integer", "minimum": 1, "maximum": 500}),
            Param("order", "desc (default): newest first; asc: oldest first.", {"type": "string", "enum": ["asc", "desc"]}),
            Param("since", "Only lines that arrived at or after this time: 10m, 2h, ISO 8601, epoch ms (jobtail)."),
            Param("until", "Only lines that arrived before this time (jobtail)."),
            Param("timestamps", "Prefix each line with its arrival time (jobtail).", {"type": "boolean"}),
            Param("collapse_cr", "Each line as a terminal shows it: carriage returns, backspaces and erase-line "
                  "(ESC[K) applied, SGR colours kept, other escape sequences dropped; line numbers unchanged (jobtail).",
                  {"type": "boolean"}),
        ),
        response={"type": "object", "properties": {
            "start_line": {"type": "string"}, "end_line": {"type": "string"},
            "lines": {"type": "integer"}, "content": {"type": "string"}}},
        tags=("logs",),
        etag="weak",
    ),
]
