"""Search of a task's whole log (jobtail extension): matches with line numbers and context."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from jobtail.core.errors import InvalidPattern
from jobtail.core.lines import Line
from jobtail.core.search import Pattern, compile_pattern
from jobtail.core.store import LogStore
from jobtail.core.types import TaskRef
from jobtail.http import access
from jobtail.http.context import context
from jobtail.http.errors import InvalidQueryParameter
from jobtail.http.logs import TASK_PATH, task_ref
from jobtail.http.params import query_bool, query_instant, query_int
from jobtail.http.routing import Operation, Param


def _line(line: Line) -> dict[str, Any]:
    return {"line": str(line.number), "offset": line.offset, "content": line.text.decode("utf-8", "replace"),
            **({"truncated": True} if line.truncated else {})}


def _search(store: LogStore, ref: TaskRef, query: tuple[str, bool, bool], options: dict[str, Any],
            budget: float) -> bytes:
    """In the thread pool, like the scan itself: compiling a regular expression costs CPU too."""
    pattern = _pattern(*query)
    state = store.state(ref)
    result = store.search(state, pattern, budget_seconds=budget, **options)
    backward = options["before_line"] is not None
    return orjson.dumps({
        "matches": [
            {**_line(m.line), "before": [_line(x) for x in m.before], "after": [_line(x) for x in m.after]}
            for m in result.matches
        ],
        "count": len(result.matches),
        "scanned_bytes": result.scanned_bytes,
        "complete": result.stopped is None,
        "stopped_by": result.stopped,
        ("next_before_line" if backward else "next_after_line"):
            None if result.next_line is None else str(result.next_line),
        "full_size": state.end_offset,
    })


def _pattern(query: str, regex: bool, ignore_case: bool) -> Pattern:
    try:
        return compile_pattern(query, regex, ignore_case)
    except InvalidPattern as exc:
        raise InvalidQueryParameter("q", exc.reason) from None


async def search(request: Request) -> Response:
    q = request.query_params
    query = q.get("q", "")
    if not query or len(query) > 1024:
        raise InvalidQueryParameter("q")
    if "after_line" in q and "before_line" in q:
        raise InvalidQueryParameter("before_line")
    wanted = (query, query_bool(q, "regex"), query_bool(q, "ignore_case"))
    options = {
        "limit": query_int(q, "limit", 100, 1, 1000),
        "context": query_int(q, "context", 0, 0, 20),
        "after_line": query_int(q, "after_line", None, 0, 10**18),
        "before_line": query_int(q, "before_line", None, 1, 10**18),
        "since": query_instant(q, "since"),
        "until": query_instant(q, "until"),
    }
    app = context(request)
    budget = app.settings.search_budget_seconds
    body = await run_in_threadpool(_search, app.store, task_ref(request), wanted, options, budget)
    return Response(body, media_type="application/json")


OPERATIONS = [
    Operation(
        "GET", TASK_PATH + "/logs/search", search, operation_id="SearchTrainingJobTaskLog",
        summary="Search a task's whole log (jobtail extension).", action=access.GET_LOGS,
        query=(
            Param("q", "Substring to find (or a regular expression with regex=true).", required=True),
            Param("regex", "Treat q as a regular expression, matched per line (^ and $ at its ends, \\A and \\Z too)"
                  " in RE2 syntax: Python's without backreferences, lookahead or lookbehind, atomic groups, possessive"
                  " quantifiers, conditionals or (?#comments), refused with 400 ModelArts.2764 saying why; at most"
                  " 1000 compiled instructions; \\s does not match \\v. Bytes are matched as bytes (. is one byte).",
                  {"type": "boolean"}),
            Param("ignore_case", "Case-insensitive for ASCII letters.", {"type": "boolean"}),
            Param("limit", "Matches to return, 1-1000 (default 100).", {"type": "integer"}),
            Param("context", "Lines of context before and after each match, 0-20.", {"type": "integer"}),
            Param("after_line", "Search forwards from after this line (continue with next_after_line).",
                  {"type": "string", "pattern": "^[0-9]+$"}),
            Param("before_line", "Search backwards from before this line, newest first (next_before_line).",
                  {"type": "string", "pattern": "^[0-9]+$"}),
            Param("since", "Only lines that arrived at or after this time: 10m, 2h, ISO 8601, epoch ms."),
            Param("until", "Only lines that arrived before this time."),
        ),
        response={"type": "object"}, tags=("logs",),
    ),
]
