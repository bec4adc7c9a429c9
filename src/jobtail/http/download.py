"""Temporary links to a whole task log (CONTRACT §4, §10.3) and the download they point to.

The link points at jobtail itself, is signed and expires after 300 s. The download streams the
log from segments and head with bounded memory, honours a single `Range` (suffix ranges too),
and gzips a whole-log response when the client accepts it.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Iterator
from urllib.parse import urlencode

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from jobtail.auth.links import LINK_TTL_SECONDS, link_valid, sign_link
from jobtail.core.errors import LogNotGenerated
from jobtail.http import access
from jobtail.http.context import context
from jobtail.http.errors import ApiError, error_response
from jobtail.http.logs import TASK_PATH, task_ref
from jobtail.http.params import query_choice, query_int
from jobtail.http.routing import Operation, Param

DOWNLOAD = "application/octet-stream"
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.IGNORECASE)  # the unit is case-insensitive (RFC 9110)
_BEYOND = 10**18  # larger than any log: what a position of more significant digits than this stands for


def _mode(request: Request) -> str:
    """`download` for application/octet-stream (query string first, then header), else `preview`."""
    wanted = request.query_params.get("Content-Type") or request.headers.get("content-type", "")
    return "download" if wanted.split(";")[0].strip().lower() == DOWNLOAD else "preview"


async def link(request: Request) -> Response:
    app, ref, mode = context(request), task_ref(request), _mode(request)
    state = await run_in_threadpool(app.store.state, ref)
    if state.end_offset == 0:
        raise LogNotGenerated()
    expires = int(time.time()) + LINK_TTL_SECONDS
    signature = sign_link(app.services.link_key, ref.project_id, ref.job_id, ref.task_id, mode, expires)
    base = app.settings.public_url.rstrip("/") or str(request.base_url).rstrip("/")
    path = request.url.path.rsplit("/", 1)[0] + "/download"
    query = urlencode({"mode": mode, "expires": expires, "signature": signature})
    return Response(orjson.dumps({"obs_url": f"{base}{path}?{query}"}), media_type="application/json")


def _position(digits: str) -> int:
    """A range position's value, without converting more digits than any offset has (Python's
    int() refuses strings over 4300 digits): a longer number is `_BEYOND`, past every log's end."""
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) < len(str(_BEYOND)) else _BEYOND


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) for a single `bytes=` range, None for the whole log; ApiError 416 when
    unsatisfiable. Several ranges, or a header that is not `bytes=` range syntax, are answered
    with the whole log (RFC 9110 §14.2 lets a server ignore Range). Work is linear in the header."""
    if header is None or "," in header:
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None or m.groups() == ("", ""):
        return None  # not a byte range we understand: ignore it, as RFC 9110 allows
    first, last = m.groups()
    if first == "":
        suffix = _position(last)
        start, end = (size if suffix == 0 else max(0, size - suffix)), size
    else:
        start, end = _position(first), size if last == "" else min(size, _position(last) + 1)
    if start >= size or start >= end:
        raise ApiError(416, "Jobtail.0416", f"Range not satisfiable: the log has {size} bytes.", full_size=size)
    return start, end


def _gzip(pieces: Iterator[bytes]) -> Iterator[bytes]:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    for piece in pieces:
        if out := compressor.compress(piece):
            yield out
    yield compressor.flush()


async def download(request: Request) -> Response:
    ref = task_ref(request)
    q = request.query_params
    mode = query_choice(q, "mode", "preview", ("preview", "download"))
    expires = query_int(q, "expires", None, 0, 10**12)
    signature = q.get("signature", "")
    app = context(request)
    key = app.services.link_key
    if expires is None or not link_valid(key, ref.project_id, ref.job_id, ref.task_id, mode, expires, signature):
        raise ApiError(403, "APIGW.0306", "API access denied: the link's signature does not match.")
    if expires < time.time():
        raise ApiError(403, "APIGW.0306", "API access denied: the link has expired; ask for a new one.")
    store = app.store
    state = await run_in_threadpool(store.readable, ref)
    # Range offsets are log offsets; bytes before start_offset (dropped by retention) are not
    # served: a range reaching into them is cut to its retained part (Content-Range says which),
    # a range wholly below start_offset is unsatisfiable (416).
    size = state.end_offset
    try:
        chosen = _byte_range(request.headers.get("range"), size)
        if chosen is not None:
            if chosen[1] <= state.start_offset:
                raise ApiError(416, "Jobtail.0416", f"Range not satisfiable: bytes before {state.start_offset} "
                               "were dropped by retention.", full_size=size)
            chosen = (max(chosen[0], state.start_offset), chosen[1])
    except ApiError as exc:
        response = error_response(request, exc.status, exc.code, exc.message, **exc.extra)
        response.headers["Content-Range"] = f"bytes */{size}"
        return response
    start, end = chosen or (state.start_offset, size)
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, no-store"}
    if mode == "download":
        headers["Content-Disposition"] = f'attachment; filename="modelarts-job-{ref.job_id}-{ref.task_id}.log"'
    body = store.read(state, start, end)
    if chosen is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers["Content-Length"] = str(end - start)
        return StreamingResponse(body, 206, headers=headers, media_type="text/plain; charset=utf-8")
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        headers["Content-Encoding"] = "gzip"
        headers["Vary"] = "Accept-Encoding"
        return StreamingResponse(_gzip(body), headers=headers, media_type="text/plain; charset=utf-8")
    headers["Content-Length"] = str(end - start)
    return StreamingResponse(body, headers=headers, media_type="text/plain; charset=utf-8")


OPERATIONS = [
    Operation(
        "GET", TASK_PATH + "/logs/url", link, operation_id="ShowObsUrlOfTrainingJobLogs",
        summary="A 5-minute link to the task's whole log.", action=access.LOG_EXPORT,
        query=(Param("Content-Type", "application/octet-stream: a download link; otherwise a preview link."),),
        response={"type": "object", "properties": {"obs_url": {"type": "string"}}}, tags=("logs",),
    ),
    Operation(
        "GET", TASK_PATH + "/logs/download", download, operation_id="DownloadTrainingJobTaskLog",
        summary="The whole log, through a signed link from .../logs/url (jobtail; no other credential).",
        action=None,
        query=(Param("mode", "preview (inline) or download (attachment)."), Param("expires", "Epoch seconds."),
               Param("signature", "HMAC of the link.")),
        response_types=("text/plain",),
        tags=("logs",),
    ),
]
