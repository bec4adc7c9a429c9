"""Live follow of a task log: `GET …/tasks/{task_id}/logs/stream` as Server-Sent Events.

**Where it starts**: the `Last-Event-ID` header (what an EventSource sends when it reconnects),
else `?offset=N`, else `?since=` (`10m`, `2h`, ISO 8601, epoch ms: the start of the first line
holding bytes that arrived then or later, through the time index), else 0. An offset before the
first retained byte starts there; one past the log's end is refused (400). All three are
validated whichever wins.

**What it sends** (each `data` is one line of JSON):

    retry: 1000                                  once, first: EventSource's reconnection delay

    id: 1234                                     the log offset after this event's bytes
    event: log
    data: {"offset": 1000, "end": 1234, "text": "..."}       the bytes are valid UTF-8
    data: {"offset": 1000, "end": 1234, "base64": "..."}     anything else
    data: {"offset": 1000, "end": 1234, "text": "...", "times": [[1000, 1733000000123], [1100, …]]}
                                                 with ?timestamps=true: from each offset on, the
                                                 bytes arrived then (epoch ms), one entry per append

    : heartbeat                                  after `stream_heartbeat_seconds` of silence

    id: 1234
    event: end
    data: {"reason": "task finished", "offset": 1234}

An event carries the log bytes `[offset, end)`, at most 1 MiB; each event's `offset` is the
previous one's `end` (only retention, by dropping bytes not yet sent, can open a visible gap).
Reconnecting with the last `id` seen, as `Last-Event-ID` or `offset`, resumes exactly after it.
A multi-byte UTF-8 character is never split across events: an incomplete one at the end of the
log is held back until the rest arrives, or sent as base64 when the log is finished. A line
holding invalid bytes goes whole as base64 (from its start, or from where the event starts), and
so do the lines after it that hold invalid bytes too; text resumes with the next valid line.

**Why it ends** (`reason` of the final `end` event; `offset` is where a reconnect would resume):
`task finished` (the job is Completed or Failed), `job terminated`, `job abnormal` — each only
after every byte up to the log's end, read after that phase was seen, was sent; `job deleted`;
`server shutting down` (the process got SIGTERM or SIGINT: reconnect with `offset`, e.g. to
another replica). A client going away ends the stream at once.

**Waking up**: streams never poll the database on a timer of their own. Appends through this
process wake them immediately; appends through other processes or replicas, phase changes and
deletions are caught by the process's one poller (`jobtail.core.follow.Notifier`), which reads
every followed log's end offset in one query every `follow_poll_seconds`.

**Limits**: at most `max_streams_per_principal` open streams per caller (by principal name) and
server process; one more is refused with 429 `APIGW.0308` and `Retry-After`. Memory per stream
is one step: at most 1 MiB of log bytes and the (at most MAX_EVENTS) events made of them; a slow
reader slows its own stream only.

**CPU**: reading, splitting into text and base64 (linear in the bytes) and encoding happen in
the thread pool, one step at a time; the event loop only sends each step's events.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import codecs
import re
from collections.abc import AsyncGenerator, Callable
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from jobtail.core.errors import JobNotFound, StorageError, TaskNotFound
from jobtail.core.follow import AsyncWake
from jobtail.core.jobs import ABNORMAL, COMPLETED, FAILED, TERMINATED, JobService
from jobtail.core.store import LogStore
from jobtail.core.types import Arrival, LogState, TaskRef
from jobtail.http import access
from jobtail.http.context import context
from jobtail.http.errors import InvalidParameter, InvalidQueryParameter, error_response
from jobtail.http.following import Following
from jobtail.http.logs import TASK_PATH, task_ref
from jobtail.http.params import query_bool, query_instant, query_int
from jobtail.http.routing import Operation, Param

EVENT_BYTES = 1024 * 1024  # log bytes per event, at most
MAX_EVENTS = 1024  # events one step makes at most (a log alternating text and invalid bytes makes many)
RETRY_MS = 1000
RETRY_AFTER_SECONDS = 5  # told to a caller over its stream cap
SHUTTING_DOWN, DELETED = "server shutting down", "job deleted"
ENDED = {COMPLETED: "task finished", FAILED: "task finished", TERMINATED: "job terminated", ABNORMAL: "job abnormal"}


# -- encoding -----------------------------------------------------------------------------------


_ESCAPED = re.compile("[\udc80-\udcff]")  # what surrogateescape decodes an invalid byte to
_CLEAN_LINE = re.compile("^[^\n\udc80-\udcff]*(?:\n|\\Z)", re.MULTILINE)  # a line without one


def utf8_pieces(data: bytes, final: bool, most: int | None = None) -> tuple[list[tuple[str | None, bytes]], int]:
    """Split `data` into (text, bytes) pieces for valid UTF-8 and (None, bytes) pieces to send as
    base64, and say how many leading bytes of `data` they cover: an incomplete character at the
    end is left out (held back) unless `final`, and so is everything after the first `most`
    pieces. A line holding invalid bytes goes whole into a base64 piece, and so do the lines after
    it that hold invalid bytes too (so a log of `a\\xff\\n` lines makes one piece, not two per line);
    a piece starts at a line start or at the start of `data`.

    Linear in `len(data)`: one decode (invalid bytes become lone surrogates, which valid UTF-8
    never decodes to), then one pass that finds them."""
    end = len(data) if final else len(data) - _unfinished(data)
    try:
        text = codecs.utf_8_decode(data[:end], "strict", True)[0]
    except UnicodeDecodeError:
        text = codecs.utf_8_decode(data[:end], "surrogateescape", True)[0]
    else:
        return ([(text, data[:end])] if end else []), end
    pieces: list[tuple[str | None, bytes]] = []
    char, pos = 0, 0  # the same place in `text` and in `data`

    def take(stop: int, as_text: bool) -> None:
        nonlocal char, pos
        size = len(text[char:stop].encode("utf-8", "surrogateescape"))
        pieces.append((text[char:stop] if as_text else None, data[pos : pos + size]))
        char, pos = stop, pos + size

    while char < len(text) and (most is None or len(pieces) < most):
        bad = _ESCAPED.search(text, char)
        if bad is None:
            take(len(text), as_text=True)
            continue
        line_start = text.rfind("\n", char, bad.start()) + 1
        if line_start > char:
            take(line_start, as_text=True)
            if most is not None and len(pieces) >= most:
                break
        newline = text.find("\n", bad.start())
        clean = None if newline < 0 else _CLEAN_LINE.search(text, newline + 1)
        take(len(text) if clean is None or clean.start() == len(text) else clean.start(), as_text=False)
    return pieces, pos


def _unfinished(data: bytes) -> int:
    """Length of a valid but unfinished UTF-8 character at the end of `data` (0 if none)."""
    for back in range(1, min(3, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return 0
        if byte >= 0xC0:  # the lead byte: is the rest a valid start of its character?
            try:
                used = codecs.utf_8_decode(data[-back:], "strict", False)[1]
            except UnicodeDecodeError:
                return 0
            return back if used == 0 else 0
    return 0


def log_event(offset: int, raw: bytes, text: str | None, arrivals: list[Arrival] | None = None) -> bytes:
    """One `log` event for the bytes `raw` found at `offset`; with `arrivals` (the appends that
    brought them, in offset order), its `times`."""
    end = offset + len(raw)
    body: dict[str, Any] = {"offset": offset, "end": end}
    if text is not None:
        body["text"] = text
    else:
        body["base64"] = base64.b64encode(raw).decode("ascii")
    if arrivals is not None:
        body["times"] = _times(arrivals, offset, end)
    return b"id: %d\nevent: log\ndata: %b\n\n" % (end, orjson.dumps(body))


def _times(arrivals: list[Arrival], offset: int, end: int) -> list[list[int]]:
    """[offset, epoch ms] of each append that brought bytes of `[offset, end)`, the first one's
    offset clipped to `offset`: the bytes from each offset on arrived then."""
    first = max(0, bisect.bisect_right([a.offset for a in arrivals], offset) - 1)
    return [[max(a.offset, offset), a.arrived_us // 1000] for a in arrivals[first:] if a.offset < end]


def end_event(reason: str, offset: int) -> bytes:
    return b"id: %d\nevent: end\ndata: %b\n\n" % (offset, orjson.dumps({"reason": reason, "offset": offset}))


class EventStream(StreamingResponse):
    """A `text/event-stream` response that, however it ends, closes its event generator (so the
    follower is unregistered at once) and then calls `on_close`."""

    def __init__(self, events: AsyncGenerator[bytes, None], on_close: Callable[[], None]) -> None:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(events, headers=headers, media_type="text/event-stream")
        self._events = events
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                await self._events.aclose()
            finally:
                self._on_close()


# -- the operation ------------------------------------------------------------------------------


def _read(store: LogStore, ref: TaskRef, start: int, end: int, state: LogState) -> bytes | None:
    """The log bytes `[start, end)`, or None when the job or task was deleted meanwhile."""
    try:
        return b"".join(store.read(state, start, end))
    except StorageError:  # its records or blobs went away under the read: deleted, or damage?
        try:
            store.state(ref)
        except (JobNotFound, TaskNotFound):
            return None
        raise


def _next_events(store: LogStore, ref: TaskRef, state: LogState, final: bool, sent: int, held: bytes,
                 pos: int, timestamps: bool = False) -> tuple[bytes, int, bytes, int, bool] | None:
    """One step of a stream, in the thread pool (splitting and encoding cost CPU in proportion
    to the bytes): read on from `pos`, up to one event's worth with the `held` bytes already
    read past `sent`, and encode at most MAX_EVENTS events (with `timestamps`, with their
    arrival times). Returns (events, sent, held, pos, whether `held` holds more events to
    make), or None when the job or task was deleted."""
    stop = min(state.end_offset, pos + EVENT_BYTES - len(held))
    chunk = _read(store, ref, pos, stop, state) if stop > pos else b""
    if chunk is None:
        return None
    data = held + chunk
    pieces, used = utf8_pieces(data, final and stop == state.end_offset, MAX_EVENTS)
    arrivals = store.arrivals(state, sent, sent + used) if timestamps and used else None
    events = []
    for text, raw in pieces:
        events.append(log_event(sent, raw, text, arrivals))
        sent += len(raw)
    return b"".join(events), sent, data[used:], stop, len(pieces) == MAX_EVENTS


def _flush(store: LogStore, state: LogState, sent: int, held: bytes, timestamps: bool) -> tuple[bytes, int]:
    """Events for the `held` bytes, whole (the log ended, or retention skipped past them), and
    the offset after them."""
    arrivals = store.arrivals(state, sent, sent + len(held)) if timestamps and held else None
    events = []
    for text, raw in utf8_pieces(held, True)[0]:
        events.append(log_event(sent, raw, text, arrivals))
        sent += len(raw)
    return b"".join(events), sent


async def _events(following: Following, ref: TaskRef, phase: str, opened: LogState,
                  start: int, timestamps: bool = False) -> AsyncGenerator[bytes, None]:
    store, shutdown = following.store, following.shutdown
    loop = asyncio.get_running_loop()
    wake = AsyncWake(loop)
    follower = store.follow(opened, ref.job_id, phase, wake)
    try:
        yield b"retry: %d\n\n" % RETRY_MS
        sent, held = start, b""  # sent: offset after the last byte sent; held: bytes read past it
        quiet_since = loop.time()
        while True:
            phase = follower.phase  # before the state: its end then covers every append before the phase
            if shutdown.is_set():
                reason = SHUTTING_DOWN
                break
            if follower.deleted:
                reason = DELETED
                break
            try:
                state = await run_in_threadpool(store.state, ref)
            except (JobNotFound, TaskNotFound):
                reason = DELETED
                break
            final = phase in ENDED
            pos = sent + len(held)
            if pos < state.start_offset:  # retention dropped bytes not yet sent: skip the gap
                if held:
                    events, sent = await run_in_threadpool(_flush, store, state, sent, held, timestamps)
                    yield events
                sent = pos = state.start_offset
                held = b""
            gone, pending = False, False
            while (pos < state.end_offset or pending) and not shutdown.is_set():
                step = await run_in_threadpool(_next_events, store, ref, state, final, sent, held, pos, timestamps)
                if gone := step is None:
                    break
                events, sent, held, pos, pending = step
                if events:
                    yield events
                quiet_since = loop.time()
            if gone:
                reason = DELETED
                break
            if shutdown.is_set():
                continue
            if final:
                if held:
                    events, sent = await run_in_threadpool(_flush, store, state, sent, held, timestamps)
                    yield events
                reason = ENDED[phase]
                break
            woken = await wake.wait(following.heartbeat - (loop.time() - quiet_since))
            if not woken and loop.time() - quiet_since >= following.heartbeat:
                yield b": heartbeat\n\n"
                quiet_since = loop.time()
        yield end_event(reason, sent)
    finally:
        store.unfollow(follower)


def _requested_start(request: Request) -> tuple[str, int | float] | None:
    """("offset", n) or ("since", epoch seconds) as the request asks, or None (from 0)."""
    q = request.query_params
    offset = query_int(q, "offset", None, 0, 2**63 - 1)
    since = query_instant(q, "since")
    last = request.headers.get("last-event-id", "").strip()
    if last:
        if not (last.isascii() and last.isdigit() and len(last) <= 19):
            raise InvalidParameter("Last-Event-ID", "It must be the id of an event of this stream.")
        return "Last-Event-ID", int(last)
    if offset is not None:
        return "offset", offset
    return None if since is None else ("since", since)


def _open(jobs: JobService, store: LogStore, ref: TaskRef,
          wanted: tuple[str, int | float] | None) -> tuple[str, LogState, int]:
    """(job phase, log state, start offset); raises the usual errors for unknown jobs and tasks."""
    job = jobs.get(ref.project_id, ref.job_id)
    state = store.state(ref)
    if wanted is None:
        return job.phase, state, state.start_offset
    name, value = wanted
    if name == "since":
        return job.phase, state, store.offset_at_time(state, value)
    if value > state.end_offset:
        if name == "offset":
            raise InvalidQueryParameter("offset")
        raise InvalidParameter(name, f"The log ends at {state.end_offset}.")
    return job.phase, state, max(int(value), state.start_offset)


async def stream(request: Request) -> Response:
    app = context(request)
    following = app.following
    ref = task_ref(request)
    wanted = _requested_start(request)
    phase, state, start = await run_in_threadpool(_open, app.jobs, app.store, ref, wanted)
    principal = getattr(request.state, "principal", None)
    key = principal.name if principal is not None else "anonymous"
    if not following.slots.acquire(key):
        response = error_response(
            request, 429, "APIGW.0308",
            f"The throttling threshold has been reached: at most {following.slots.cap} open log streams per caller.",
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    timestamps = query_bool(request.query_params, "timestamps")
    events = _events(following, ref, phase, state, start, timestamps)
    return EventStream(events, on_close=lambda: following.slots.release(key))


_EVENT_SCHEMA = {  # one event, as the module docstring describes them
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["log", "end"]},
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "retry": {"type": "integer"},
        "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": {
            "type": "object",
            "properties": {"offset": {"type": "integer", "minimum": 0}, "end": {"type": "integer", "minimum": 0},
                           "text": {"type": "string"}, "base64": {"type": "string"}, "reason": {"type": "string"},
                           "times": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}}},
            "required": ["offset"],
        }},
    },
}

OPERATIONS = [
    Operation(
        "GET",
        TASK_PATH + "/logs/stream",
        stream,
        operation_id="StreamTrainingJobTaskLog",
        summary="Follow a task's log live as Server-Sent Events, resumable by offset (jobtail).",
        action=access.GET_LOGS,
        query=(
            Param("offset", "Log offset to start at (an event id); the Last-Event-ID header takes precedence.",
                  {"type": "integer", "minimum": 0}),
            Param("since", "Start at the first line that arrived at or after this time: 10m, 2h, ISO 8601, epoch ms."),
            Param("timestamps", "Give each log event `times`: [offset, epoch ms] of each append in it, when the "
                  "bytes from that offset arrived (jobtail).", {"type": "boolean"}),
        ),
        response=_EVENT_SCHEMA,
        response_types=("text/event-stream",),
        tags=("logs",),
    ),
]
