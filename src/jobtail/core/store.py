"""LogStore: the one facade through which the rest of jobtail touches task logs.

Appends go to the head (durable when acknowledged, with their arrival times); sealing moves the
head into immutable blob segments, each carrying its appends' arrival times in a trailer; reads
fix an end offset first (a `LogState`) and then assemble bytes from whatever mix of segments and
head holds them. The store makes its own decisions: an append that fills a head schedules its
seal (`jobtail.core.sealer`; the seal itself: `jobtail.core.sealing`), `start()` runs
maintenance (idle seals, checkpoints, retention, sweeps), it owns the follow notifier and the
cache of encoded previews. Its backends (`jobtail.core.log_records`, `.job_records`,
`.blob_store`) are private to it.

Read methods take the `LogState` that `state(ref)` returned, so that one request sees one
snapshot however many calls it makes.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

from jobtail.core import ids
from jobtail.core.arrivals import ArrivalIndex, to_microseconds
from jobtail.core.blob_store import BlobStore
from jobtail.core.errors import (
    JobNotFound,
    LogCleared,
    LogNotGenerated,
    LogTooLarge,
    OffsetConflict,
    TaskNotFound,
)
from jobtail.core.follow import Follower, Notifier
from jobtail.core.job_records import JobRecords
from jobtail.core.lines import Line, LineFinder
from jobtail.core.log_records import LogRecords
from jobtail.core.maintenance import FailureLog, Maintenance, MaintenancePolicy
from jobtail.core.observer import StoreObserver, Unobserved
from jobtail.core.preview import PREVIEW_CAP, snap, window_start
from jobtail.core.preview_cache import PreviewCache
from jobtail.core.reader import Reader
from jobtail.core.retention import Expired, RetentionParts, apply_retention
from jobtail.core.sealer import Sealer
from jobtail.core.sealing import Sealing
from jobtail.core.search import Pattern, Searcher, SearchResult
from jobtail.core.terminal import final_state
from jobtail.core.types import (
    Arrival,
    DeletedJob,
    EncodedPreview,
    IndexPolicy,
    LogState,
    Preview,
    TaskRef,
)

_APPEND_RACE_RETRIES = 64
PREVIEW_FORMAT = 1  # part of every preview's entity tag: bump when the same bytes preview differently
PREVIEW_ENCODERS = 2  # previews (of different logs) encoded at once per process: each holds ~5x the window

PreviewEncoder = Callable[[Preview], bytes]
DEFAULT_INDEX_POLICY = IndexPolicy()


@dataclass(frozen=True, slots=True)
class Appended:
    """The result of an append: the log's end offset after it."""

    full_size: int


@dataclass(frozen=True, slots=True)
class Backends:
    """What a LogStore works on. `close` releases them (the database, the blob store); the store
    calls it last in its own `close()`."""

    jobs: JobRecords
    logs: LogRecords
    blobs: BlobStore
    close: Callable[[], None] = lambda: None
    local_reads: bool = False  # the records are a local file (SQLite): a state read takes microseconds


def readable(state: LogState) -> LogState:
    """`state`, if the log has bytes to read: LogNotGenerated before the first append,
    LogCleared when retention dropped every byte."""
    if state.end_offset == 0:
        raise LogNotGenerated()
    if state.start_offset >= state.end_offset:
        raise LogCleared()
    return state


class LogStore:
    """Task logs: appends, reads, previews, lines, search, follow, seals and retention.

    `seal_bytes`: a head this large is sealed into a segment; `segment_bytes`: the most a single
    segment takes from the head; `preview_bytes`: the preview cap; `preview_encoder` turns a
    Preview into the bytes `encoded_preview` returns (and caches, in `preview_cache_bytes`);
    `follow_poll_seconds`: how often followers learn of other processes' appends; `observer` hears
    of appends, seals and preview cache lookups (for metrics). All methods are thread-safe.
    `local_reads`: `state` is a local read of microseconds, so `state` and `answered_preview` may
    run on an event loop; else they wait on the network.
    """

    def __init__(
        self,
        backends: Backends,
        *,
        preview_bytes: int = PREVIEW_CAP,
        seal_bytes: int = 8 * 1024 * 1024,
        segment_bytes: int = 64 * 1024 * 1024,
        index_policy: IndexPolicy = DEFAULT_INDEX_POLICY,
        preview_encoder: PreviewEncoder | None = None,
        preview_cache_bytes: int = 256 * 1024 * 1024,
        follow_poll_seconds: float = 0.25,
        clock: Callable[[], float] = time.time,
        observer: StoreObserver | None = None,
    ) -> None:
        self._backends = backends
        self._jobs = backends.jobs
        self._logs = backends.logs
        self._blobs = backends.blobs
        self.preview_bytes = preview_bytes
        self.seal_bytes = seal_bytes
        self.local_reads = backends.local_reads

        self._index_policy = index_policy
        self._clock = clock
        self._observer: StoreObserver = observer or Unobserved()
        self._encode = preview_encoder
        self._previews = PreviewCache(preview_cache_bytes)
        self._encoding: dict[TaskRef, threading.Event] = {}  # logs whose preview a thread is encoding
        self._encoding_lock = threading.Lock()
        self._encoders = threading.BoundedSemaphore(PREVIEW_ENCODERS)
        self._reader = Reader(self._logs, self._blobs)
        self._lines = LineFinder(self._logs, self._reader)
        self._arrivals = ArrivalIndex(self._logs, self._blobs)
        self._searcher = Searcher(self._reader, self._lines)
        self._notifier = Notifier(self._logs, self._jobs, follow_poll_seconds)
        self._failures = FailureLog()
        self._seals = Sealing(self._logs, self._blobs, segment_bytes, clock, self._observer)
        self._sealer = Sealer(lambda log_id: self._seals.seal_log(log_id, self.seal_bytes, wait=False), self._failures)
        self._maintenance: Maintenance | None = None

    # -- the engine's life --------------------------------------------------------------------

    def start(self, policy: MaintenancePolicy) -> None:
        """Run maintenance in the background (idle seals and checkpoints every few seconds,
        retention, sweeps; see `jobtail.core.maintenance`) until `close()`. For servers."""
        if self._maintenance is None:
            self._maintenance = Maintenance(self, policy, self._failures)
            self._maintenance.start()

    def stop(self) -> None:
        """Stop maintenance (`start` may run it again)."""
        if self._maintenance is not None:
            self._maintenance.stop()
            self._maintenance = None

    def close(self) -> None:
        """Stop the background work (seals under way finish) and release the backends. Idempotent."""
        self.stop()
        self._sealer.close()
        self._notifier.close()
        self._backends.close()

    # -- state ----------------------------------------------------------------------------------

    def state(self, ref: TaskRef) -> LogState:
        """The task log's current state; raises InvalidId, JobNotFound, TaskNotFound."""
        ids.check_project_id(ref.project_id)
        ids.check_job_id(ref.job_id)
        ids.check_task_id(ref.task_id)
        state = self._logs.log_state(ref.project_id, ref.job_id, ref.task_id)
        if state is None:
            if self._jobs.get_job(ref.project_id, ref.job_id) is None:
                raise JobNotFound(ref.job_id)
            raise TaskNotFound(ref.task_id)
        return state

    def readable(self, ref: TaskRef) -> LogState:
        """`state(ref)`, if the log has bytes to read (else LogNotGenerated / LogCleared)."""
        return readable(self.state(ref))

    # -- reading ------------------------------------------------------------------------------

    def preview(self, state: LogState) -> Preview:
        """The preview of CONTRACT §10.1 as of `state`: at most `preview_bytes`, whatever the log's size."""
        readable(state)
        begin = window_start(state.start_offset, state.end_offset, self.preview_bytes)
        window = self._reader.read(state.log_id, begin, state.end_offset)
        skip = snap(window, at_log_start=begin == state.start_offset)
        return Preview(
            content=str(memoryview(window)[skip:], "utf-8", "replace"),  # no copy of the window for the cut
            current_size=len(window) - skip,
            full_size=state.end_offset,
        )

    def preview_etag(self, state: LogState) -> str:
        """The entity tag of the preview as of `state`: equal tags, equal bodies (the bytes below
        a log's end never change, so the offsets and the cap decide the body)."""
        return f'"{state.start_offset:x}.{state.end_offset:x}.{self.preview_bytes:x}.{PREVIEW_FORMAT}"'

    def cached_preview(self, ref: TaskRef, state: LogState) -> EncodedPreview | None:
        """The encoded preview of `ref` as of `state` (or a later state) if it is in memory: no
        I/O, a dictionary lookup (safe on an event loop)."""
        return self._previews.get(ref, state.start_offset, state.end_offset)

    def answered_preview(self, ref: TaskRef,
                         if_none_match: Collection[str] = ()) -> tuple[EncodedPreview | None, LogState | None]:
        """What `encoded_preview` answers, when that needs no encoding (the caller's copy is
        current, or the encoded preview is in memory), and the state it read, for
        `encoded_preview` to start from when an encoding is needed (the answer None). One local
        state read: a task log that is not found gives (None, None), and `encoded_preview` says
        which of job and task is missing (that asks the job records, off the event loop)."""
        ids.check_project_id(ref.project_id)
        ids.check_job_id(ref.job_id)
        ids.check_task_id(ref.task_id)
        state = self._logs.log_state(ref.project_id, ref.job_id, ref.task_id)
        if state is None:
            return None, None
        state = readable(state)
        return self._answered(ref, state, if_none_match), state

    def _answered(self, ref: TaskRef, state: LogState, if_none_match: Collection[str]) -> EncodedPreview | None:
        etag = self.preview_etag(state)
        if etag in if_none_match or "*" in if_none_match:
            return EncodedPreview(None, etag)
        cached = self.cached_preview(ref, state)
        if cached is not None and cached.etag in if_none_match:
            return EncodedPreview(None, cached.etag)
        if cached is not None:
            self._observer.preview_cache(True)
        return cached

    def encoded_preview(self, ref: TaskRef, if_none_match: Collection[str] = (),
                        state: LogState | None = None) -> EncodedPreview:
        """The current preview of `ref` (as of `state` when given: one `answered_preview` read),
        encoded by the `preview_encoder`, from memory when the
        log has not moved since it was last encoded. When its tag is among `if_none_match` (or
        that holds `*`), the body is not made at all (`body` None): the caller's copy is current.

        Single-flight per log and process: while one thread encodes a log's preview, others
        asking for the same log wait for it and take its result when it covers the state they
        read (it was made from a state read after theirs, or the same); otherwise one of them
        encodes next. So a log that grows under many readers costs one encoding at a time, and
        at most a few previews' buffers, not one per reader; and at most PREVIEW_ENCODERS logs'
        previews are encoded at once, so memory stays bounded however many logs are read.
        """
        if self._encode is None:
            raise RuntimeError("this LogStore was opened without a preview encoder")
        state, waited = readable(state if state is not None else self.state(ref)), False
        while True:
            answered = self._answered(ref, state, if_none_match)
            if answered is not None:
                return answered
            with self._encoding_lock:
                busy = self._encoding.get(ref)
                if busy is None:
                    self._encoding[ref] = done = threading.Event()
            if busy is not None:
                busy.wait()
                waited = True
                continue
            try:
                if waited:  # read again: the freshest state serves the most of the readers waiting now
                    state = readable(self.state(ref))
                self._observer.preview_cache(False)
                with self._encoders:
                    encoded = EncodedPreview(self._encode(self.preview(state)), self.preview_etag(state))
                self._previews.put(ref, state.start_offset, state.end_offset, encoded)
                return encoded
            finally:
                with self._encoding_lock:
                    del self._encoding[ref]
                done.set()

    def lines(
        self,
        state: LogState,
        *,
        base_line: int | None,
        count: int,
        descending: bool,
        since: float | None = None,
        until: float | None = None,
        collapse_cr: bool = False,
    ) -> list[Line]:
        """A page of lines per CONTRACT §10.2: with `base_line` B, continue past line B (B
        excluded) in the requested direction; without it, the newest lines (descending, newest
        first) or the oldest (ascending). `since`/`until` (epoch seconds) keep only lines whose
        bytes arrived in `[since, until)`, exactly (each append's arrival time is kept).
        `collapse_cr` gives each line as a terminal shows it (`jobtail.core.terminal`; invalid
        UTF-8 as U+FFFD), and a line cut at MAX_LINE_BYTES its last redraw rather than its head."""
        low, high = self._line_range(readable(state), since, until)
        if descending:
            last = high if base_line is None else min(high, base_line - 1)
            first = max(low, last - count + 1)
        else:
            first = low if base_line is None else max(low, base_line + 1)
            last = min(high, first + count - 1)
        if last < first:
            return []
        page = self._lines.page(state, first, last - first + 1, tails=collapse_cr)
        while descending and page and page[-1].number < last:  # cut by the byte cap: keep the newest
            first = last - len(page) + 1
            page = self._lines.page(state, first, last - first + 1, tails=collapse_cr)
        if descending:
            page.reverse()
        if collapse_cr:
            page = [dataclasses.replace(line, text=final_state(line.text.decode("utf-8", "replace")).encode())
                    for line in page]
        return page

    def line_range(self, state: LogState) -> tuple[int, int]:
        """(first retained line, last line) of the log; `first > last` when it holds none."""
        if state.end_offset == 0:
            return 1, 0
        if state.start_offset >= state.end_offset:
            return state.line_count + 1, state.line_count
        return self._lines.first_line(state), self._lines.total(state)

    def search(
        self,
        state: LogState,
        pattern: Pattern,
        *,
        after_line: int | None = None,
        before_line: int | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        context: int = 0,
        budget_seconds: float = 10.0,
    ) -> SearchResult:
        """Lines matching `pattern` (see `jobtail.core.search`). With `before_line` the scan runs
        backwards from just before it, newest match first; otherwise forwards from after
        `after_line` (or the first line)."""
        first, last = self._line_range(readable(state), since, until)
        if after_line is not None:
            first = max(first, after_line + 1)
        if before_line is not None:
            last = min(last, before_line - 1)
        return self._searcher.search(
            state, pattern, first_line=first, last_line=last, backward=before_line is not None,
            limit=limit, context=context, budget_seconds=budget_seconds,
        )

    def _line_range(self, state: LogState, since: float | None, until: float | None) -> tuple[int, int]:
        """(first, last) line numbers of the retained lines whose bytes arrived in `[since, until)`."""
        low = self._lines.first_line(state)  # the oldest retained line
        if since is not None:
            low = max(low, self.line_at_time(state, since))
        high = self._lines.total(state) if until is None else self.line_at_time(state, until) - 1
        return low, high

    def line_at_time(self, state: LogState, at: float) -> int:
        """The first line holding bytes that arrived at or after `at` (past the last line if none)."""
        offset = self._arrivals.offset_at_time(state, at)
        if offset >= state.end_offset:
            return self._lines.total(state) + 1
        return self._lines.line_of(state, offset)

    def offset_at_time(self, state: LogState, at: float) -> int:
        """Where the first line holding bytes that arrived at or after `at` begins (the end
        offset when none did); never before the first retained byte."""
        offset = self._arrivals.offset_at_time(state, at)
        if offset >= state.end_offset:
            return state.end_offset
        start = self._lines.start_of(state, self._lines.line_of(state, offset))
        return max(start, state.start_offset)

    def arrival_times(self, state: LogState, offsets: list[int]) -> list[float]:
        """For each offset (ascending), when the bytes there arrived (epoch seconds), exactly."""
        return self._arrivals.times_of(state, offsets)

    def arrivals(self, state: LogState, start: int, end: int) -> list[Arrival]:
        """The appends overlapping `[start, end)` with their arrival times, in offset order."""
        return self._arrivals.arrivals(state, start, end)

    def read(self, state: LogState, start: int, end: int) -> Iterator[bytes]:
        """Stream the retained bytes `[start, end)`, clipped to the log as of `state`."""
        start = max(start, state.start_offset)
        end = min(end, state.end_offset)
        return self._reader.stream(state.log_id, start, end)

    # -- following ------------------------------------------------------------------------------

    def follow(self, state: LogState, job_id: str, phase: str, wake: Callable[[], None]) -> Follower:
        """Register `wake` to be called whenever the log of `state` (of job `job_id`, seen in
        `phase`) may have grown or its job changed or went away (see `jobtail.core.follow`).
        Pair with `unfollow`."""
        return self._notifier.follow(state.log_id, job_id, end=state.end_offset, phase=phase, wake=wake)

    def unfollow(self, follower: Follower) -> None:
        self._notifier.unfollow(follower)

    def following(self) -> int:
        """Followers registered in this process."""
        return self._notifier.following()

    def wake_followers(self) -> None:
        """Wake every follower of this process (safe from a signal handler: no locks)."""
        self._notifier.wake_all()

    # -- writing ------------------------------------------------------------------------------

    def append(
        self, ref: TaskRef, data: bytes, offset: int | None = None, *, max_size: int = 0,
        arrived_at: float | None = None,
    ) -> Appended:
        """Append `data` at `offset` (the end when None); returns the new end offset.

        Idempotent by offset: bytes that repeat what is already stored at `offset` are
        acknowledged without being stored twice, and only the part past the end is appended.
        Raises OffsetConflict (carrying the end offset) when `offset` is past the end or the
        overlapping bytes differ, and LogTooLarge when `max_size` (0: no cap) is set and the
        new bytes would take the log past it; either way nothing is stored. The bytes' arrival
        time is `arrived_at` (epoch seconds; now when None), kept to the microsecond. A head
        that this append fills is sealed in the background.
        """
        state = self.state(ref)
        end = state.end_offset
        arrived_us = to_microseconds(self._clock() if arrived_at is None else arrived_at)
        for _ in range(_APPEND_RACE_RETRIES):
            at = end if offset is None else offset
            if at > end:
                raise OffsetConflict(at, end)
            chunk = data
            if at < end:
                chunk = self._unstored_suffix(state, at, data, end)
                if not chunk:
                    return Appended(end)
            if max_size and end + len(chunk) > max_size:
                raise LogTooLarge(max_size, end)
            outcome = self._logs.append(state.log_id, end, chunk, arrived_us, self._index_policy)
            if outcome.stored:
                self._observer.appended(len(chunk))
                self._notifier.appended(state.log_id, outcome.end_offset)
                if outcome.end_offset - state.sealed_offset >= self.seal_bytes:
                    self._sealer.schedule(state.log_id)
                return Appended(outcome.end_offset)
            end = outcome.end_offset  # another writer appended meanwhile: judge again
        raise OffsetConflict(offset if offset is not None else end, end)

    def append_line(self, ref: TaskRef, line: bytes) -> Appended:
        """Append `line` (ending with a newline) so that it starts a line of its own: after a
        newline when the log does not end with one."""
        state = self.state(ref)
        end = state.end_offset
        last = b"".join(self.read(state, end - 1, end)) if end else b"\n"
        return self.append(ref, line if last == b"\n" else b"\n" + line, end)

    def _unstored_suffix(self, state: LogState, at: int, data: bytes, end: int) -> bytes:
        """The part of `data` (meant for offset `at < end`) past `end`, if the rest matches the log."""
        overlap = min(len(data), end - at)
        if at < state.start_offset:
            raise OffsetConflict(at, end)
        if self._reader.read(state.log_id, at, at + overlap) != data[:overlap]:
            raise OffsetConflict(at, end)
        return data[overlap:]

    def forget_job(self, deleted: DeletedJob) -> None:
        """Delete the segment blobs of a job whose records are gone (`JobRecords.delete_job`)."""
        for key in deleted.segment_keys:
            self._blobs.delete(key)

    # -- sealing ------------------------------------------------------------------------------

    def seal(self, ref: TaskRef) -> int:
        """Seal the whole head of one task log now (after a seal of it under way in this
        process); returns the number of segments written."""
        return self._seals.seal_log(self.state(ref).log_id, min_head_bytes=1, wait=True)

    # -- maintenance (see jobtail.core.maintenance) ---------------------------------------------

    def seal_idle_heads(self, idle_seconds: float) -> int:
        """Seal every head idle for `idle_seconds` or at least `seal_bytes` large, then
        checkpoint the database; returns segments written."""
        due = self._logs.logs_to_seal(self._clock() - idle_seconds, self.seal_bytes)
        written = sum(self._seals.seal_log(log_id, min_head_bytes=1, wait=False) for log_id in due)
        self._logs.checkpoint()
        return written

    def apply_retention(self, max_age_seconds: float, *, dry_run: bool = False) -> list[Expired]:
        """Drop every task log's sealed segments created more than `max_age_seconds` ago, oldest
        first, advancing its start offset (see `jobtail.core.retention`); `max_age_seconds` <= 0
        keeps everything. Returns what was (with `dry_run`: would be) dropped, per log."""
        if max_age_seconds <= 0:
            return []
        cutoff = self._clock() - max_age_seconds
        parts = RetentionParts(self._logs, self._blobs, self._lines, self._arrivals)
        return apply_retention(parts, cutoff, dry_run=dry_run)

    def sweep_orphans(self, grace_seconds: float) -> list[str]:
        """Delete blobs that no segment record names, and what blob writes that never completed
        left (`BlobStore.sweep_partial`), older than `grace_seconds`; returns their names (see
        `jobtail.core.sealing`)."""
        return self._seals.sweep_orphans(self._clock() - grace_seconds)
