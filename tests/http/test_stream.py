"""Live follow over real HTTP: `GET …/tasks/{task}/logs/stream` as Server-Sent Events.

Every test runs against a uvicorn server on a loopback socket, once per metadata backend.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st
from support.engine import Engine, backends_of, jobs_of, new_job
from support.live import run_server
from support.serve import wait_until_serving

from jobtail.client import Client, connect
from jobtail.core.jobs import ABNORMAL, COMPLETED, FAILED, RUNNING
from jobtail.core.store import LogStore, PreviewEncoder
from jobtail.core.types import JobRecord, TaskRef
from jobtail.http.access import OpenGuard
from jobtail.http.context import AppContext
from jobtail.http.following import Following, Shutdown, StreamSlots
from jobtail.http.stream import EVENT_BYTES, utf8_pieces
from jobtail.settings import Settings

PROJECT = "proj"
THREAD_PREFIX = "stream-test"


# -- a server whose app we can reach, and readers of its streams ---------------------------------


@dataclass
class Server:
    url: str
    store: LogStore
    app: Any

    @property
    def following(self) -> Following:
        context: AppContext = self.app.state.context
        return context.following

    def new_job(self, name: str = "follow", nodes: int = 1) -> tuple[JobRecord, TaskRef]:
        job = new_job(self.store, PROJECT, name, node_count=nodes)
        running = jobs_of(self.store).transition(job, RUNNING)
        assert running is not None
        return running, TaskRef(PROJECT, job.id, "worker-0")


def stream_path(ref: TaskRef) -> str:
    return f"/v2/{ref.project_id}/training-jobs/{ref.job_id}/tasks/{ref.task_id}/logs/stream"


@pytest.fixture(autouse=True)
def no_thread_left() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = [t.name for t in threading.enumerate()
                if t.name == "jobtail-follow-poller" or t.name.startswith(THREAD_PREFIX)]
        if not left:
            return
        time.sleep(0.02)
    pytest.fail(f"threads left running: {left}")


@pytest.fixture
def serve(tmp_path: Path, engine_factory: Callable[..., Engine]) -> Iterator[Callable[..., Server]]:
    """Start servers (executor none) over the parametrised metadata backend; stop them at teardown,
    ending their streams first as a SIGTERM would."""
    running: list[tuple[uvicorn.Server, threading.Thread, Any]] = []

    def start(store_options: dict[str, Any] | None = None, **options: Any) -> Server:
        config = Settings(**{"data_dir": tmp_path, "seal_idle_seconds": 3600.0, "executor": "none", **options})
        def make(encoder: PreviewEncoder) -> Engine:
            return engine_factory(seal_bytes=config.seal_bytes, preview_encoder=encoder,
                                  follow_poll_seconds=config.follow_poll_seconds, **(store_options or {}))

        server, thread, url, engine = run_server(config, make, OpenGuard())
        app = server.config.app
        running.append((server, thread, app))
        return Server(url, engine.store, app)

    yield start
    for server, thread, app in running:
        app.state.context.following.shutdown.trigger()
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive()


@dataclass
class Event:
    kind: str  # log | end | comment | retry
    id: int | None = None
    data: dict[str, Any] | None = None
    comment: str = ""

    @property
    def raw(self) -> bytes:
        assert self.data is not None
        return self.data["text"].encode() if "text" in self.data else base64.b64decode(self.data["base64"])


def parse_event(block: bytes) -> Event:
    """One SSE event (the lines between blank lines), strictly as the stream documents them."""
    fields: dict[str, str] = {}
    for line in block.decode("utf-8").split("\n"):
        if line.startswith(":"):
            return Event("comment", comment=line[1:].strip())
        name, _, value = line.partition(": ")
        assert name not in fields, f"repeated field in {block!r}"
        fields[name] = value
    if set(fields) == {"retry"}:
        return Event("retry")
    assert set(fields) == {"id", "event", "data"}, block
    return Event(fields["event"], int(fields["id"]), json.loads(fields["data"]))


def events_of(chunks: Iterator[bytes]) -> Iterator[Event]:
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            yield parse_event(block)


class Tail:
    """One stream read by a thread; its events (with arrival times) go to a queue."""

    def __init__(self, url: str, ref: TaskRef, headers: dict[str, str] | None = None,
                 params: dict[str, Any] | None = None) -> None:
        self.events: queue.Queue[tuple[float, Event] | None] = queue.Queue()
        self.status: int | None = None
        self._ready = threading.Event()
        self._args = (url, ref, headers or {}, params or {})
        self._thread = threading.Thread(target=self._run, name=f"{THREAD_PREFIX}-tail", daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "no response headers"

    def _run(self) -> None:
        url, ref, headers, params = self._args
        try:
            with httpx.Client(base_url=url, timeout=30) as http, \
                    http.stream("GET", stream_path(ref), headers=headers, params=params) as response:
                self.status = response.status_code
                self._ready.set()
                for event in events_of(response.iter_raw()):
                    self.events.put((time.monotonic(), event))
        finally:
            self._ready.set()
            self.events.put(None)

    def next(self, timeout: float = 10, skip: tuple[str, ...] = ("retry", "comment")) -> tuple[float, Event]:
        while True:
            item = self.events.get(timeout=timeout)
            assert item is not None, "the stream closed"
            if item[1].kind not in skip:
                return item

    def until_end(self, timeout: float = 10) -> tuple[bytes, Event]:
        data = b""
        while True:
            _, event = self.next(timeout)
            if event.kind == "end":
                self._thread.join(timeout=10)
                return data, event
            data += event.raw

    def join(self) -> None:
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()


# -- random logs ---------------------------------------------------------------------------------

_PIECES = [b"step 17 ", b"loss=0.25 ", "損失 ".encode(), "✓".encode(), "🚀".encode(), "é".encode(), b"\n", b"\n",
           b"\r", b"\xff", b"\xc3(", b"\xe2\x82", b"\xed\xa0\x80", b"\x00", b"\xf0\x9f"]


def random_log(rng: random.Random, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        out += rng.choice(_PIECES)
    return bytes(out)


def random_chunks(rng: random.Random, data: bytes, most: int = 300) -> list[bytes]:
    chunks, pos = [], 0
    while pos < len(data):
        step = rng.randint(1, most)
        chunks.append(data[pos : pos + step])
        pos += step
    return chunks


def valid_char_spans(log: bytes) -> list[tuple[int, int]]:
    """(start, end) of every valid multi-byte UTF-8 character in `log`."""
    spans, pos = [], 0
    for ch in log.decode("utf-8", "surrogateescape"):
        width = 1 if 0xDC80 <= ord(ch) <= 0xDCFF else len(ch.encode())
        if width > 1:
            spans.append((pos, pos + width))
        pos += width
    return spans


def assert_no_split_characters(log: bytes, boundaries: set[int]) -> None:
    for start, end in valid_char_spans(log):
        inside = [b for b in range(start + 1, end) if b in boundaries]
        assert not inside, f"event boundary {inside} splits the character {log[start:end]!r} at {start}"


def write_slowly(server: Server, ref: TaskRef, job: JobRecord, chunks: list[bytes], rng: random.Random,
                 finish: str = COMPLETED) -> threading.Thread:
    def run() -> None:
        for i, chunk in enumerate(chunks):
            server.store.append(ref, chunk)
            if rng.random() < 0.08:
                server.store.seal(ref)
            if i % 4 == 0:
                time.sleep(rng.uniform(0, 0.01))
        assert jobs_of(server.store).transition(job, finish) is not None

    thread = threading.Thread(target=run, name=f"{THREAD_PREFIX}-writer", daemon=True)
    thread.start()
    return thread


# -- the acceptance test -------------------------------------------------------------------------


@pytest.mark.parametrize("resume_with", ["Last-Event-ID", "offset"])
def test_random_disconnects_end_with_exactly_the_bytes_written(serve: Callable[..., Server], resume_with: str) -> None:
    server = serve(seal_bytes=2048)
    job, ref = server.new_job()
    rng = random.Random(f"disconnects-{resume_with}")
    log = random_log(rng, 40_000)
    writer = write_slowly(server, ref, job, random_chunks(rng, log), rng)

    received, boundaries, last, connections, reason = b"", set(), 0, 0, None
    with httpx.Client(base_url=server.url, timeout=30) as http:
        while reason is None:
            connections += 1
            headers: dict[str, str] = {}
            params: dict[str, int] = {}
            if connections > 1 and resume_with == "offset":
                params = {"offset": last}
            elif connections > 1:  # as an EventSource resumes; Last-Event-ID wins over a stale offset
                headers, params = {"Last-Event-ID": str(last)}, {"offset": rng.randint(0, last)}
            budget = rng.randint(1, 3000)  # cut the connection after this many bytes: mid-event too
            with http.stream("GET", stream_path(ref), headers=headers, params=params) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")

                def limited() -> Iterator[bytes]:
                    nonlocal budget
                    for chunk in response.iter_raw(chunk_size=rng.randint(1, 512)):
                        yield chunk[:budget]
                        budget -= len(chunk)
                        if budget <= 0:
                            return

                for event in events_of(limited()):
                    if event.kind == "log":
                        assert event.data is not None
                        assert event.data["offset"] == last, "each event continues exactly where the last ended"
                        assert event.id == event.data["end"] == last + len(event.raw)
                        assert 0 < len(event.raw) <= EVENT_BYTES
                        boundaries.update((event.data["offset"], event.data["end"]))
                        received += event.raw
                        last = event.id
                    elif event.kind == "end":
                        assert event.data is not None
                        reason = event.data["reason"]
                        assert event.data["offset"] == event.id == last
                        break
    writer.join(timeout=30)
    assert reason == "task finished"
    assert received == log, "the follower must end with exactly the bytes written"
    assert connections > 5, "the test must actually reconnect"
    assert_no_split_characters(log, boundaries - {len(log)})


def test_client_follow_reconnects_through_network_errors(serve: Callable[..., Server]) -> None:
    server = serve()
    job, ref = server.new_job()
    rng = random.Random(7)
    log = random_log(rng, 30_000)
    writer = write_slowly(server, ref, job, random_chunks(rng, log), rng, finish=FAILED)

    class Flaky(httpx.BaseTransport):
        """Drops each stream after a random number of bytes, as a bad network would."""

        def __init__(self) -> None:
            self.inner = httpx.HTTPTransport()
            self.breaks = 0

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = self.inner.handle_request(request)
            budget = rng.randint(50, 4000)
            inner, transport = response.stream, self

            class Stream(httpx.SyncByteStream):
                def __iter__(self) -> Iterator[bytes]:
                    nonlocal budget
                    for chunk in inner:  # type: ignore[union-attr]
                        if len(chunk) >= budget:
                            yield chunk[:budget]
                            transport.breaks += 1
                            raise httpx.ReadError("connection reset (injected)")
                        budget -= len(chunk)
                        yield chunk

                def close(self) -> None:
                    inner.close()  # type: ignore[union-attr]

            return httpx.Response(response.status_code, headers=response.headers, stream=Stream(),
                                  extensions=response.extensions)

        def close(self) -> None:
            self.inner.close()

    flaky = Flaky()
    with Client(server.url, project_id=PROJECT) as client:
        client.http = httpx.Client(base_url=server.url, transport=flaky, timeout=30)
        follow = client.follow(ref.job_id, max_retries=3, retry_wait=0.01)
        received = b""
        for end, data in follow:
            received += data
            assert end == len(received)
    writer.join(timeout=30)
    assert follow.reason == "task finished" and follow.offset == len(log)
    assert received == log
    assert flaky.breaks > 3 and follow.reconnects >= flaky.breaks


# -- encoding ------------------------------------------------------------------------------------


def test_multibyte_characters_are_never_split_and_invalid_bytes_come_as_base64(serve: Callable[..., Server]) -> None:
    server = serve(stream_heartbeat_seconds=60)
    job, ref = server.new_job()
    tail = Tail(server.url, ref)
    assert tail.status == 200
    store = server.store
    store.append(ref, b"a\xe2")
    _, event = tail.next()
    assert event.data == {"offset": 0, "end": 1, "text": "a"}, "the incomplete character is held back"
    store.append(ref, b"\x82")
    time.sleep(0.1)
    store.append(ref, b"\xac!")
    _, event = tail.next()
    assert event.data == {"offset": 1, "end": 5, "text": "€!"}, "the character arrives whole, in one event"
    store.append(ref, b"ok\n\xff\xfe raw \xe2\x82\nfine \xf0\x9f")
    _, first = tail.next()
    _, second = tail.next()
    _, third = tail.next()
    assert first.data == {"offset": 5, "end": 8, "text": "ok\n"}
    assert second.data == {"offset": 8, "end": 18, "base64": base64.b64encode(b"\xff\xfe raw \xe2\x82\n").decode()}
    assert third.data == {"offset": 18, "end": 23, "text": "fine "}
    assert jobs_of(store).transition(job, COMPLETED) is not None
    data, end = tail.until_end()
    assert data == b"\xf0\x9f", "at the end, an unfinished character is sent as it is"
    assert end.data == {"reason": "task finished", "offset": 25}
    assert end.id == 25


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40) | st.text(max_size=10).map(str.encode), max_size=30), st.data())
def test_utf8_pieces_cover_the_bytes_exactly_without_splitting_characters(parts: list[bytes], data: st.DataObject) -> None:
    log = b"".join(parts)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(log)), max_size=8)))
    reads = [log[a:b] for a, b in zip([0, *cuts], [*cuts, len(log)], strict=True)]
    out, held, boundaries, pos = b"", b"", set(), 0
    for i, chunk in enumerate(reads):
        buffer = held + chunk
        pieces, used = utf8_pieces(buffer, final=i == len(reads) - 1)
        assert b"".join(raw for _, raw in pieces) == buffer[:used]
        for text, raw in pieces:
            assert raw
            if text is not None:
                assert text.encode() == raw
            else:
                with pytest.raises(UnicodeDecodeError):
                    raw.decode()
            boundaries.add(pos)
            pos += len(raw)
        held = buffer[used:]
        assert len(held) <= 3
        out += buffer[:used]
    assert out == log and not held
    assert_no_split_characters(log, boundaries)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=60), st.integers(1, 5))
def test_utf8_pieces_stop_after_the_pieces_asked_for(parts: list[bytes], most: int) -> None:
    data = b"".join(parts)
    whole, _ = utf8_pieces(data, final=True)
    first, covered = utf8_pieces(data, final=True, most=most)
    assert first == whole[:most] and covered == sum(len(raw) for _, raw in first)
    assert first + utf8_pieces(data[covered:], final=True)[0] == whole, "the next step goes on where it stopped"


def test_lines_with_invalid_bytes_go_whole_and_together() -> None:
    """A log alternating text and invalid bytes (`a\\xff\\n`) must not make an event per few bytes
    (3 MiB of it once became 158 MB of events): such lines go whole, as one base64 piece."""
    data = b"fine\n" + b"a\xff\n" * 1000 + b"ok \xe2\x82\xac\nb\xfe"
    pieces, used = utf8_pieces(data, final=True)
    assert used == len(data)
    assert pieces == [("fine\n", b"fine\n"), (None, b"a\xff\n" * 1000), ("ok \u20ac\n", b"ok \xe2\x82\xac\n"),
                      (None, b"b\xfe")]
    assert utf8_pieces(b"tail of a line \xff rest\nnext\n", final=True)[0] == [
        (None, b"tail of a line \xff rest\n"), ("next\n", b"next\n")], "a piece may start where the data starts"


def test_following_much_invalid_utf8_does_not_stall_the_server(serve: Callable[..., Server]) -> None:
    """Issue 14's reproduction: 2 MiB of b"\xff\n" took 43 s to a first event and stalled /healthz
    for up to 21.7 s (the split was quadratic and ran on the event loop). Now it is linear and
    runs in the thread pool. The bounds only catch a freeze (measured: first event after 0.1 s,
    every byte after 0.2 s, /healthz at most 12 ms)."""
    server = serve()
    job, ref = server.new_job()
    log = b"\xff\n" * (4 * 1024 * 1024)  # 8 MiB
    server.store.append(ref, log)
    assert jobs_of(server.store).transition(job, COMPLETED) is not None
    slowest = 0.0
    with httpx.Client(base_url=server.url, timeout=30) as http:
        http.get("/healthz")
        started = time.monotonic()
        tail = Tail(server.url, ref)
        first, event = tail.next()
        data = event.raw
        while True:
            start = time.monotonic()
            assert http.get("/healthz").status_code == 200
            slowest = max(slowest, time.monotonic() - start)
            try:
                _, event = tail.next(timeout=0.01)
            except queue.Empty:
                continue
            if event.kind == "end":
                break
            data += event.raw
    tail.join()
    assert data == log and event.data == {"reason": "task finished", "offset": len(log)}
    assert first - started < 2.0, f"first event after {first - started:.2f} s"
    assert slowest < 0.5, f"/healthz took up to {slowest:.3f} s"


def test_big_appends_come_in_events_of_at_most_one_mebibyte(serve: Callable[..., Server]) -> None:
    server = serve()
    job, ref = server.new_job()
    log = ("損失=0.25 " * 262_000).encode()  # 12 bytes a repeat: 1 MiB cuts fall inside characters
    server.store.append(ref, log)
    assert jobs_of(server.store).transition(job, COMPLETED) is not None
    tail = Tail(server.url, ref)
    sizes, boundaries, data = [], set(), b""
    while True:
        _, event = tail.next()
        if event.kind == "end":
            break
        assert event.data is not None and "text" in event.data
        sizes.append(len(event.raw))
        boundaries.add(event.data["offset"])
        data += event.raw
    tail.join()
    assert data == log
    assert max(sizes) <= EVENT_BYTES and len(sizes) in (3, 4)
    assert_no_split_characters(log, boundaries)


# -- waking up -----------------------------------------------------------------------------------


def test_appends_through_this_process_wake_the_stream_at_once(serve: Callable[..., Server]) -> None:
    server = serve(follow_poll_seconds=30, stream_heartbeat_seconds=60)  # the poller would take 30 s
    _, ref = server.new_job()
    tail = Tail(server.url, ref)
    for i in range(3):
        appended = time.monotonic()
        server.store.append(ref, f"line {i}\n".encode())
        arrived, event = tail.next()
        assert event.raw == f"line {i}\n".encode()
        # 5 s: far below the poller's 30 s, above what a loaded 2-core machine takes (0.8 s seen)
        assert arrived - appended < 5, "woken by the append itself, not by a poller (30 s here)"
    server.following.shutdown.trigger()
    assert tail.until_end()[1].data == {"reason": "server shutting down", "offset": 21}


def test_appends_through_another_process_are_caught_by_the_poller(
    serve: Callable[..., Server], store_factory: Callable[..., LogStore]
) -> None:
    server = serve(follow_poll_seconds=0.25, stream_heartbeat_seconds=60)
    other = store_factory()  # another LogStore on the same database: another process or replica
    job, ref = server.new_job()
    tail = Tail(server.url, ref)
    for i in range(3):
        appended = time.monotonic()
        other.append(ref, f"from afar {i}\n".encode())
        arrived, event = tail.next(timeout=5)
        assert event.raw == f"from afar {i}\n".encode()
        assert arrived - appended < 0.9, "the poller looks four times a second"
        time.sleep(0.05 * i)
    assert jobs_of(other).transition(job, COMPLETED) is not None
    assert tail.until_end()[1].data == {"reason": "task finished", "offset": 36}


def test_without_the_poller_other_processes_appends_wait(
    serve: Callable[..., Server], store_factory: Callable[..., LogStore]
) -> None:
    """Proves that streams do not poll the database themselves: with the poller slowed to 30 s,
    another process's append is not seen until something in this process wakes the stream."""
    server = serve(follow_poll_seconds=30, stream_heartbeat_seconds=60)
    other = store_factory()
    _, ref = server.new_job()
    tail = Tail(server.url, ref)
    server.store.append(ref, b"first\n")  # once it is sent, the stream waits to be woken
    assert tail.next()[1].data == {"offset": 0, "end": 6, "text": "first\n"}
    other.append(ref, b"quiet\n")
    with pytest.raises(queue.Empty):
        tail.next(timeout=1.0)
    server.store.append(ref, b"loud\n")
    _, event = tail.next()
    assert event.data == {"offset": 6, "end": 17, "text": "quiet\nloud\n"}
    server.following.shutdown.trigger()
    tail.until_end()


def test_heartbeats_keep_an_idle_stream_talking(serve: Callable[..., Server]) -> None:
    server = serve(stream_heartbeat_seconds=0.2)
    _, ref = server.new_job()
    tail = Tail(server.url, ref)
    started = time.monotonic()
    beats = []
    while len(beats) < 3:
        arrived, event = tail.next(timeout=5, skip=("retry",))
        assert event.kind == "comment" and event.comment == "heartbeat"
        beats.append(arrived - started)
    assert 0.1 < beats[0] < 1.0
    assert beats[2] - beats[0] < 1.5
    server.store.append(ref, b"x")
    _, event = tail.next(timeout=5)
    assert event.raw == b"x"
    server.following.shutdown.trigger()
    tail.until_end()


# -- why streams end -----------------------------------------------------------------------------


def _end_by(how: str, server: Server, job: JobRecord) -> None:
    jobs = jobs_of(server.store)
    match how:
        case "completed":
            assert jobs.transition(job, COMPLETED) is not None
        case "failed":
            assert jobs.transition(job, FAILED) is not None
        case "abnormal":
            assert jobs.transition(job, ABNORMAL) is not None
        case "terminated":
            jobs.terminate(PROJECT, job.id)
        case "deleted":
            jobs.delete(PROJECT, job.id)
        case "shutdown":
            server.following.shutdown.trigger()


@pytest.mark.parametrize(("how", "reason"), [
    ("completed", "task finished"),
    ("failed", "task finished"),
    ("abnormal", "job abnormal"),
    ("terminated", "job terminated"),
    ("deleted", "job deleted"),
    ("shutdown", "server shutting down"),
])
def test_the_final_event_says_why_the_stream_ended(serve: Callable[..., Server], how: str, reason: str) -> None:
    server = serve(stream_heartbeat_seconds=60)
    job, ref = server.new_job()
    tail = Tail(server.url, ref)
    server.store.append(ref, b"first\n")
    assert tail.next()[1].raw == b"first\n"
    if how != "shutdown":  # bytes appended just before the job ends are still delivered
        server.store.append(ref, b"last words\n")
        if how == "deleted":
            assert tail.next()[1].raw == b"last words\n"
    started = time.monotonic()
    _end_by(how, server, job)
    data, end = tail.until_end()
    assert time.monotonic() - started < 2
    expected = {"shutdown": b"", "deleted": b""}.get(how, b"last words\n")
    assert data == expected
    offset = 6 if how == "shutdown" else 17
    assert end.data == {"reason": reason, "offset": offset} and end.id == offset
    assert _slots_free_soon(server)


def _slots_free_soon(server: Server) -> bool:
    """Whether every stream's slot and follower are given back (promptly) once it ended."""
    def busy() -> bool:
        return bool(server.following.slots.open("anonymous") or server.store.following())

    deadline = time.monotonic() + 2
    while busy() and time.monotonic() < deadline:
        time.sleep(0.01)
    return not busy()


def test_a_finished_job_streams_its_log_and_ends(serve: Callable[..., Server]) -> None:
    server = serve()
    job, ref = server.new_job()
    server.store.append(ref, b"one\ntwo\n")
    server.store.seal(ref)
    server.store.append(ref, b"three\n")
    assert jobs_of(server.store).transition(job, COMPLETED) is not None
    data, end = Tail(server.url, ref).until_end()
    assert data == b"one\ntwo\nthree\n" and end.data == {"reason": "task finished", "offset": 14}
    data, end = Tail(server.url, ref, params={"offset": 4}).until_end()
    assert data == b"two\nthree\n"
    data, end = Tail(server.url, ref, headers={"Last-Event-ID": "14"}).until_end()
    assert data == b"" and end.data == {"reason": "task finished", "offset": 14}


def test_with_timestamps_each_event_says_when_its_bytes_arrived(serve: Callable[..., Server]) -> None:
    server = serve()
    job, ref = server.new_job()
    t0 = 1_700_000_000.0
    server.store.append(ref, b"one\ntw", arrived_at=t0)
    server.store.seal(ref)
    server.store.append(ref, b"o\nthree\n", arrived_at=t0 + 0.25)
    assert jobs_of(server.store).transition(job, COMPLETED) is not None
    tail = Tail(server.url, ref, params={"timestamps": "true", "offset": 4})
    _, event = tail.next()
    assert event.kind == "log" and (event.data or {})["offset"] == 4
    assert (event.data or {})["times"] == [[4, 1_700_000_000_000], [6, 1_700_000_000_250]]
    assert tail.until_end()[1].kind == "end"
    _, plain = Tail(server.url, ref).next()
    assert "times" not in (plain.data or {}), "only when asked for"


def test_shutdown_signal_chains_to_the_previous_handler() -> None:
    assert threading.current_thread() is threading.main_thread()
    calls: list[int] = []
    saved = {sig: signal.getsignal(sig) for sig in Shutdown.SIGNALS}
    shutdown = Shutdown(lambda: None)  # no followers to wake
    try:
        signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
        assert shutdown.install()
        assert not shutdown.is_set()
        signal.raise_signal(signal.SIGTERM)
        assert shutdown.is_set() and calls == [signal.SIGTERM]
        shutdown.uninstall()
        assert signal.getsignal(signal.SIGINT) is saved[signal.SIGINT]
        signal.raise_signal(signal.SIGTERM)
        assert calls == [signal.SIGTERM, signal.SIGTERM]
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_shutdown_install_is_a_no_op_off_the_main_thread() -> None:
    shutdown = Shutdown(lambda: None)
    before = signal.getsignal(signal.SIGTERM)
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(shutdown.install()), name=f"{THREAD_PREFIX}-install")
    thread.start()
    thread.join()
    assert result == [False] and signal.getsignal(signal.SIGTERM) is before


# -- where streams start -------------------------------------------------------------------------


def test_since_starts_at_the_first_line_that_arrived_then(serve: Callable[..., Server]) -> None:
    now = time.time()
    clock = [now - 3600]
    server = serve(store_options={"clock": lambda: clock[0]})
    job, ref = server.new_job()
    server.store.append(ref, b"an hour ago\nstill old, but this line ")
    clock[0] = now - 60
    server.store.append(ref, b"ends a minute ago\nnew\n")
    assert jobs_of(server.store).transition(job, COMPLETED) is not None
    newer = b"still old, but this line ends a minute ago\nnew\n"
    assert Tail(server.url, ref, params={"since": "10m"}).until_end()[0] == newer
    assert Tail(server.url, ref, params={"since": "2h"}).until_end()[0].startswith(b"an hour ago\n")
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 600))
    assert Tail(server.url, ref, params={"since": iso}).until_end()[0] == newer
    assert Tail(server.url, ref, params={"since": str(int(now * 1000))}).until_end()[0] == b""
    # offset beats since; Last-Event-ID beats both
    assert Tail(server.url, ref, params={"since": "10m", "offset": 3}).until_end()[0].startswith(b"hour ago")
    data, _ = Tail(server.url, ref, headers={"Last-Event-ID": "5"}, params={"since": "10m", "offset": 3}).until_end()
    assert data.startswith(b"ur ago")


@pytest.mark.parametrize(("where", "status", "code"), [
    ("unknown job", 400, "ModelArts.2775"),
    ("unknown task", 400, "ModelArts.2788"),
    ("offset past the end", 400, "ModelArts.2764"),
    ("negative offset", 400, "ModelArts.2764"),
    ("Last-Event-ID past the end", 400, "ModelArts.2788"),
    ("garbled Last-Event-ID", 400, "ModelArts.2788"),
    ("garbled since", 400, "ModelArts.2764"),
])
def test_errors_before_the_stream_starts_are_normal_error_responses(
    serve: Callable[..., Server], where: str, status: int, code: str
) -> None:
    server = serve()
    _, ref = server.new_job()
    server.store.append(ref, b"12345")
    path, headers, params = stream_path(ref), {}, {}
    match where:
        case "unknown job":
            path = stream_path(TaskRef(PROJECT, "0f0e7c1e-1111-4444-8888-123456789abc", "worker-0"))
        case "unknown task":
            path = stream_path(TaskRef(PROJECT, ref.job_id, "worker-7"))
        case "offset past the end":
            params = {"offset": 6}
        case "negative offset":
            params = {"offset": -1}
        case "Last-Event-ID past the end":
            headers = {"Last-Event-ID": "6"}
        case "garbled Last-Event-ID":
            headers = {"Last-Event-ID": "12abc"}
        case "garbled since":
            params = {"since": "yesterday"}
    with httpx.Client(base_url=server.url, timeout=10) as http:
        response = http.get(path, headers=headers, params=params)
    assert response.status_code == status
    assert response.json()["error_code"] == code
    assert response.headers["content-type"] == "application/json"


def test_an_empty_log_is_followed_until_bytes_arrive(serve: Callable[..., Server]) -> None:
    server = serve()
    _, ref = server.new_job()
    tail = Tail(server.url, ref)
    assert tail.status == 200
    server.store.append(ref, b"hello")
    assert tail.next()[1].data == {"offset": 0, "end": 5, "text": "hello"}
    server.following.shutdown.trigger()
    tail.until_end()


# -- limits --------------------------------------------------------------------------------------


def test_streams_per_principal_are_capped(serve: Callable[..., Server]) -> None:
    server = serve(max_streams_per_principal=2)
    _, ref = server.new_job()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        first = http.send(http.build_request("GET", stream_path(ref)), stream=True)
        second = http.send(http.build_request("GET", stream_path(ref)), stream=True)
        assert first.status_code == second.status_code == 200
        refused = http.get(stream_path(ref))
        assert refused.status_code == 429
        assert refused.json()["error_code"] == "APIGW.0308"
        assert int(refused.headers["retry-after"]) > 0
        first.close()  # the server notices the client went away and frees its slot
        deadline = time.monotonic() + 5
        while True:
            third = http.send(http.build_request("GET", stream_path(ref)), stream=True)
            if third.status_code == 200 or time.monotonic() > deadline:
                break
            third.close()
            time.sleep(0.02)
        assert third.status_code == 200
        third.close()
        second.close()
    assert _slots_free_soon(server)


def test_stream_slots_count_per_principal() -> None:
    slots = StreamSlots(2)
    assert slots.acquire("alice") and slots.acquire("alice")
    assert not slots.acquire("alice")
    assert slots.acquire("bob")
    slots.release("alice")
    assert slots.open("alice") == 1 and slots.acquire("alice")
    for _ in range(3):
        slots.release("alice")
    assert slots.open("alice") == 0 and slots.open("bob") == 1


def test_the_stream_is_documented_with_its_action(serve: Callable[..., Server]) -> None:
    server = serve()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        doc = http.get("/openapi.json").json()
    op = doc["paths"]["/v2/{project_id}/training-jobs/{training_job_id}/tasks/{task_id}/logs/stream"]["get"]
    assert op["x-modelarts-action"] == "modelarts:trainJob:getLogs"
    assert {p["name"] for p in op["parameters"]} >= {"offset", "since"}


def test_sigterm_ends_streams_of_a_real_server_at_once(tmp_path: Path) -> None:
    """`jobtail serve` in its own process (signals reach its main thread): SIGTERM ends each open
    stream with `server shutting down`, so the server stops without waiting out its grace period."""
    env = {**os.environ, "JOBTAIL_DATA_DIR": str(tmp_path)}
    env.pop("JOBTAIL_CREDENTIALS", None)
    env.pop("JOBTAIL_URL", None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "jobtail", "serve", "--port", str(port), "--executor", "none"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", server)
        project = json.loads((tmp_path / "credentials.json").read_text())["project_id"]
        job_id = subprocess.run(
            [sys.executable, "-m", "jobtail", "admin", "job", "create", "--project", project, "--name", "sigterm"],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()
        with connect(credentials_file=tmp_path / "credentials.json") as client:  # signed: the real guard
            client.json("POST", f"/v2/{project}/training-jobs/{job_id}/tasks/worker-0/logs", content=b"hello\n")
            follow = client.follow(job_id, max_retries=0)
            events = iter(follow)
            assert next(events) == (6, b"hello\n")
            signalled = time.monotonic()
            server.send_signal(signal.SIGTERM)
            assert list(events) == []
            assert follow.reason == "server shutting down" and follow.offset == 6
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    assert time.monotonic() - signalled < 5, output
    assert server.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output


def test_a_read_under_a_deletion_is_told_apart_from_damage(store: LogStore) -> None:
    from jobtail.core.errors import StorageError
    from jobtail.http.stream import _read

    job = new_job(store, PROJECT, "gone", node_count=1)
    ref = TaskRef(PROJECT, job.id, "worker-0")
    store.append(ref, b"sealed bytes\n")
    store.seal(ref)
    store.append(ref, b"head bytes\n")
    state = store.state(ref)
    assert _read(store, ref, 0, state.end_offset, state) == b"sealed bytes\nhead bytes\n"
    (segment,) = backends_of(store).logs.segments(state.log_id)
    backends_of(store).blobs.delete(segment.blob_key)  # damage: the job is still there, its blob is not
    with pytest.raises(StorageError):
        _read(store, ref, 0, state.end_offset, state)
    jobs_of(store).delete(PROJECT, job.id)  # deleted after the state was taken: nothing left to read
    assert _read(store, ref, 0, state.end_offset, state) is None
