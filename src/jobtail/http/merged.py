"""A job's task logs merged by arrival, a page at a time (jobtail extension; see `jobtail.core.merge`).

`GET /v2/{project_id}/training-jobs/{training_job_id}/merged-logs`: lines of the tasks in `tasks`
(default: all) in merged order, each with its task, line number and arrival time. Where:
`after=CURSOR` / `before=CURSOR` (from an earlier answer's `end` / `start`), `at=N` (the page
starting at position N of 0 … `total`), else the newest lines. A cursor is one line number per
task, joined by commas. With `after` and `wait=S` (at most 30), an answer that would be empty
waits up to S seconds for any of the logs to grow: live follow over plain requests, resumable
exactly from the last `end`, one connection whatever the number of tasks. While the job runs,
a task's last line counts only once its newline has arrived (so a follower never holds half of it).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from jobtail.core.follow import AsyncWake
from jobtail.core.jobs import TERMINAL, JobService
from jobtail.core.merge import MergedLog, MergedPage
from jobtail.core.store import LogStore
from jobtail.core.types import LogState, TaskRef
from jobtail.http import access
from jobtail.http.context import context
from jobtail.http.errors import InvalidQueryParameter
from jobtail.http.jobs import JOB
from jobtail.http.params import query_bool, query_int
from jobtail.http.routing import Operation, Param

MAX_WAIT_SECONDS = 30


def _cursor(raw: str | None, name: str, width: int) -> tuple[int, ...] | None:
    if raw is None:
        return None
    parts = raw.split(",")
    if len(parts) != width or not all(p.isascii() and p.isdigit() and len(p) <= 18 for p in parts):
        raise InvalidQueryParameter(name)
    return tuple(int(p) for p in parts)


def _open(jobs: JobService, store: LogStore, project_id: str, job_id: str, tasks: str | None,
          collapse_cr: bool) -> tuple[MergedLog, str]:
    """The merged snapshot of the chosen tasks and the job's phase."""
    job = jobs.get(project_id, job_id)
    chosen = list(job.tasks) if tasks is None else tasks.split(",")
    if not chosen or len(set(chosen)) != len(chosen) or not set(chosen) <= set(job.tasks):
        raise InvalidQueryParameter("tasks")
    chosen.sort(key=job.tasks.index)
    refs = [TaskRef(project_id, job_id, task) for task in chosen]
    # While the job runs, a line counts once its newline arrived, so a follower sees it whole.
    return MergedLog(store, refs, collapse_cr=collapse_cr, complete_only=job.phase not in TERMINAL), job.phase


def _page(merged: MergedLog, where: dict[str, Any], count: int) -> MergedPage:
    width = len(merged.spans)
    if where["at"] is not None:
        return merged.page_after(merged.cursor_at(where["at"]), count)
    after = _cursor(where["after"], "after", width)
    if after is not None:
        return merged.page_after(after, count)
    before = _cursor(where["before"], "before", width)
    return merged.page_before(merged.last_cursor if before is None else before, count)


def _render(merged: MergedLog, phase: str, page: MergedPage) -> bytes:
    return orjson.dumps({
        "tasks": [span.task for span in merged.spans],
        "phase": phase,
        "total": merged.total,
        "position": merged.position(page.start),
        "start": ",".join(map(str, page.start)),
        "end": ",".join(map(str, page.end)),
        "lines": [
            {"task": m.task, "line": str(m.line.number), "time": int(m.arrival * 1000),
             "content": m.line.text.decode("utf-8", "replace"), **({"truncated": True} if m.line.truncated else {})}
            for m in page.lines
        ],
        "logs": [
            {"task": span.task, "first_line": str(span.first), "last_line": str(span.last),
             "full_size": span.end_offset,
             "last_time": None if span.last_arrival is None else int(span.last_arrival * 1000)}
            for span in merged.spans
        ],
    })


def _answer(jobs: JobService, store: LogStore, request: Request,
            where: dict[str, Any]) -> tuple[bytes, bool, str, list[LogState]]:
    """The answer's body, whether it holds no line, the job's phase and where its logs ended."""
    p, q = request.path_params, request.query_params
    merged, phase = _open(jobs, store, p["project_id"], p["training_job_id"], q.get("tasks"),
                          query_bool(q, "collapse_cr"))
    page = _page(merged, where, where["count"])
    return _render(merged, phase, page), not page.lines, phase, merged.states


async def merged_logs(request: Request) -> Response:
    q = request.query_params
    where = {
        "at": query_int(q, "at", None, 0, 10**18),
        "after": q.get("after"),
        "before": q.get("before"),
        "count": query_int(q, "lines", 100, 1, 500),
    }
    if sum(where[k] is not None for k in ("at", "after", "before")) > 1:
        raise InvalidQueryParameter("before" if where["before"] is not None else "after")
    wait = query_int(q, "wait", 0, 0, MAX_WAIT_SECONDS) or 0
    app = context(request)
    store = app.store
    body, empty, phase, states = await run_in_threadpool(_answer, app.jobs, store, request, where)
    if empty and wait and where["after"] is not None and phase not in TERMINAL:
        wake = AsyncWake()
        job_id = request.path_params["training_job_id"]
        followers = [store.follow(state, job_id, phase, wake) for state in states]
        try:
            if not app.following.shutdown.is_set() and await wake.wait(wait):
                body = (await run_in_threadpool(_answer, app.jobs, store, request, where))[0]
        finally:
            for follower in followers:
                store.unfollow(follower)
    return Response(body, media_type="application/json")


_CURSOR = {"type": "string", "pattern": "^[0-9]+(,[0-9]+)*$"}

OPERATIONS = [
    Operation(
        "GET", JOB + "/merged-logs", merged_logs, operation_id="ListTrainingJobMergedLogs",
        summary="The job's task logs merged by arrival time, a page at a time; long-polls with wait (jobtail).",
        action=access.GET_LOGS,
        query=(
            Param("tasks", "Comma-separated tasks to merge (default: every task of the job)."),
            Param("lines", "Lines to return, 1-500 (default 100).", {"type": "integer", "minimum": 1, "maximum": 500}),
            Param("after", "The lines after this cursor (an answer's end).", _CURSOR),
            Param("before", "The lines before this cursor (an answer's start).", _CURSOR),
            Param("at", "The lines from this position (0 … total).", {"type": "integer", "minimum": 0}),
            Param("collapse_cr", "Each line as a terminal shows it (as for line pages).", {"type": "boolean"}),
            Param("wait", f"With after: wait up to this many seconds (at most {MAX_WAIT_SECONDS}) for new lines.",
                  {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECONDS}),
        ),
        response={"type": "object", "properties": {
            "tasks": {"type": "array", "items": {"type": "string"}}, "phase": {"type": "string"},
            "total": {"type": "integer"}, "position": {"type": "integer"},
            "start": {"type": "string"}, "end": {"type": "string"},
            "lines": {"type": "array", "items": {"type": "object"}},
            "logs": {"type": "array", "items": {"type": "object"}}}},
        tags=("logs",),
    ),
]
