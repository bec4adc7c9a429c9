"""LogStore: the one facade through which the rest of jobtail touches task logs and jobs.

Appends go to the head in the metadata database (durable when acknowledged); sealing moves the
head into immutable blob segments; reads fix an end offset first and then assemble bytes from
whatever mix of segments and head holds them.
"""

from __future__ import annotations

import dataclasses
import errno
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from jobtail.blobs.base import BlobStore
from jobtail.core import ids, keys
from jobtail.core.errors import (
    JobNotFound,
    LogCleared,
    LogNotGenerated,
    LogTooLarge,
    OffsetConflict,
    StorageFull,
    StorageNotWritable,
    TaskNotFound,
)
from jobtail.core.lines import Line, LineFinder
from jobtail.core.preview import PREVIEW_CAP, snap, window_start
from jobtail.core.reader import Reader
from jobtail.core.retention import Expired, apply_retention
from jobtail.core.search import Pattern, Searcher, SearchResult
from jobtail.core.terminal import final_state
from jobtail.core.types import HeadChunk, IndexPolicy, JobRecord, LogState, Preview, Segment, TaskRef
from jobtail.meta.base import MetaStore

_APPEND_RACE_RETRIES = 64
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
MAX_NODE_COUNT = 256


@dataclass(frozen=True, slots=True)
class Appended:
    """The result of an append: the log's end offset, and whether its head is due for sealing
    (the caller then runs `seal_log(log_id)`, typically off the request path)."""

    log_id: int
    full_size: int
    seal_due: bool


class LogStore:
    """Task logs and the jobs that own them.

    `seal_bytes`: a head this large is sealed into a segment; `segment_bytes`: the most a single
    segment takes from the head; `preview_bytes`: the preview cap. All methods are thread-safe.
    """

    def __init__(
        self,
        meta: MetaStore,
        blobs: BlobStore,
        *,
        preview_bytes: int = PREVIEW_CAP,
        seal_bytes: int = 8 * 1024 * 1024,
        segment_bytes: int = 64 * 1024 * 1024,
        index_policy: IndexPolicy = IndexPolicy(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.meta = meta
        self.blobs = blobs
        self.preview_bytes = preview_bytes
        self.seal_bytes = seal_bytes
        self.segment_bytes = segment_bytes
        self.index_policy = index_policy
        self._clock = clock
        self._reader = Reader(meta, blobs)
        self._lines = LineFinder(meta, self._reader)
        self._searcher = Searcher(self._reader, self._lines)
        self._sealing: set[int] = set()
        self._writing: set[str] = set()  # segment keys written but perhaps not recorded yet
        self._sealing_lock = threading.Lock()
        # Called as listener(log_id, end_offset) after every stored append, in the appending
        # thread; they must be quick and not raise (the follow Notifier wakes followers here).
        self.listeners: list[Callable[[int, int], None]] = []

    def close(self) -> None:
        self.meta.close()
        self.blobs.close()

    # -- jobs ---------------------------------------------------------------------------------

    def create_job(
        self,
        project_id: str,
        name: str,
        *,
        node_count: int = 1,
        document: dict[str, Any] | None = None,
        executor: str = "none",
    ) -> JobRecord:
        """Create a job with tasks `worker-0 ... worker-(node_count-1)`, each with an empty log."""
        ids.check_project_id(project_id)
        ids.check_job_name(name)
        if not 1 <= node_count <= MAX_NODE_COUNT:
            raise ids.InvalidParameter("spec.resource.node_count", f"It must be 1-{MAX_NODE_COUNT}.")
        job = JobRecord(
            id=ids.new_job_id(),
            project_id=project_id,
            name=name,
            tasks=tuple(ids.worker_tasks(node_count)),
            created_at=int(self._clock() * 1000),
            document=document or {},
            executor=executor,
        )
        self.meta.create_job(job)
        return job

    def get_job(self, project_id: str, job_id: str) -> JobRecord:
        ids.check_project_id(project_id)
        ids.check_job_id(job_id)
        job = self.meta.get_job(project_id, job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def delete_job(self, project_id: str, job_id: str) -> None:
        """Delete the job, its task logs and their segment blobs."""
        self.get_job(project_id, job_id)
        for key in self.meta.delete_job(project_id, job_id):
            self.blobs.delete(key)

    # -- reading ------------------------------------------------------------------------------

    def state(self, ref: TaskRef) -> LogState:
        """The task log's current state; raises JobNotFound / TaskNotFound."""
        ids.check_project_id(ref.project_id)
        ids.check_job_id(ref.job_id)
        ids.check_task_id(ref.task_id)
        state = self.meta.log_state(ref.project_id, ref.job_id, ref.task_id)
        if state is None:
            if self.meta.get_job(ref.project_id, ref.job_id) is None:
                raise JobNotFound(ref.job_id)
            raise TaskNotFound(ref.task_id)
        return state

    def preview(self, ref: TaskRef, state: LogState | None = None) -> Preview:
        """The preview of CONTRACT §10.1 as of `state` (the current state when omitted).

        Reads at most `preview_bytes` of the log, whatever its size.
        """
        state = state or self.state(ref)
        if state.end_offset == 0:
            raise LogNotGenerated()
        if state.start_offset >= state.end_offset:
            raise LogCleared()
        begin = window_start(state.start_offset, state.end_offset, self.preview_bytes)
        window = self._reader.read(state.log_id, begin, state.end_offset)
        skip = snap(window, at_log_start=begin == state.start_offset)
        content = window[skip:] if skip else window
        return Preview(
            content=content.decode("utf-8", "replace"),
            current_size=len(window) - skip,
            full_size=state.end_offset,
        )

    def lines(
        self,
        ref: TaskRef,
        *,
        base_line: int | None,
        count: int,
        descending: bool,
        since: float | None = None,
        until: float | None = None,
        collapse_cr: bool = False,
        state: LogState | None = None,
    ) -> list[Line]:
        """A page of lines per CONTRACT §10.2: with `base_line` B, continue past line B (B
        excluded) in the requested direction; without it, the newest lines (descending, newest
        first) or the oldest (ascending). `since`/`until` (epoch seconds) keep only lines whose
        bytes arrived in `[since, until)`, to the time index's precision. `collapse_cr` gives
        each line as a terminal shows it (`jobtail.core.terminal`; invalid UTF-8 as U+FFFD),
        and a line cut at MAX_LINE_BYTES its last redraw rather than its head."""
        state = state or self.state(ref)
        if state.end_offset == 0:
            raise LogNotGenerated()
        if state.start_offset >= state.end_offset:
            raise LogCleared()
        low = self._lines.first_line(state)  # the oldest retained line
        if since is not None:
            low = max(low, self.line_at_time(ref, since, state))
        high = self._lines.total(state) if until is None else self.line_at_time(ref, until, state) - 1
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

    def line_range(self, ref: TaskRef, state: LogState | None = None) -> tuple[int, int]:
        """(first retained line, last line) of the log; `first > last` when it holds none."""
        state = state or self.state(ref)
        if state.end_offset == 0:
            return 1, 0
        if state.start_offset >= state.end_offset:
            return state.line_count + 1, state.line_count
        return self._lines.first_line(state), self._lines.total(state)

    def search(
        self,
        ref: TaskRef,
        pattern: Pattern,
        *,
        after_line: int | None = None,
        before_line: int | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        context: int = 0,
        budget_seconds: float = 10.0,
        state: LogState | None = None,
    ) -> SearchResult:
        """Lines matching `pattern` (see `jobtail.core.search`). With `before_line` the scan runs
        backwards from just before it, newest match first; otherwise forwards from after
        `after_line` (or the first line)."""
        state = state or self.state(ref)
        if state.end_offset == 0:
            raise LogNotGenerated()
        if state.start_offset >= state.end_offset:
            raise LogCleared()
        first = self._lines.first_line(state)
        if since is not None:
            first = max(first, self.line_at_time(ref, since, state))
        last = self._lines.total(state) if until is None else self.line_at_time(ref, until, state) - 1
        if after_line is not None:
            first = max(first, after_line + 1)
        if before_line is not None:
            last = min(last, before_line - 1)
        return self._searcher.search(
            state, pattern, first_line=first, last_line=last, backward=before_line is not None,
            limit=limit, context=context, budget_seconds=budget_seconds,
        )

    def line_at_time(self, ref: TaskRef, at: float, state: LogState | None = None) -> int:
        """The first line holding bytes that arrived at or after `at` (past the last line if none)."""
        state = state or self.state(ref)
        entry = self.meta.index_ceil_time(state.log_id, at)
        if entry is None or entry.offset >= state.end_offset:
            return self._lines.total(state) + 1
        return self._lines.line_of(state, entry.offset)

    def offset_at_time(self, ref: TaskRef, at: float, state: LogState | None = None) -> int:
        """Where the first line holding bytes that arrived at or after `at` begins (the end
        offset when none did), to the time index's precision; never before the first retained byte."""
        state = state or self.state(ref)
        entry = self.meta.index_ceil_time(state.log_id, at)
        if entry is None or entry.offset >= state.end_offset:
            return state.end_offset
        start = self._lines.start_of(state, self._lines.line_of(state, entry.offset))
        return max(start, state.start_offset)

    def arrival_times(self, state: LogState, offsets: list[int]) -> list[float]:
        """For each offset (ascending), when the bytes there arrived, to the index's precision."""
        if not offsets:
            return []
        floor = self.meta.index_floor_offset(state.log_id, offsets[0])
        entries = self.meta.index_entries(state.log_id, offsets[0], offsets[-1] + 1)
        times, current, i = [], floor, 0
        for offset in offsets:
            while i < len(entries) and entries[i].offset <= offset:
                current, i = entries[i], i + 1
            times.append(current.appended_at if current else 0.0)
        return times

    def read(self, ref: TaskRef, start: int, end: int, state: LogState | None = None) -> Iterator[bytes]:
        """Stream the retained bytes `[start, end)`, clipped to the log as of `state`."""
        state = state or self.state(ref)
        start = max(start, state.start_offset)
        end = min(end, state.end_offset)
        return self._reader.stream(state.log_id, start, end)

    # -- writing ------------------------------------------------------------------------------

    def append(self, ref: TaskRef, data: bytes, offset: int | None = None, *, max_size: int = 0) -> Appended:
        """Append `data` at `offset` (the end when None); returns the new end offset.

        Idempotent by offset: bytes that repeat what is already stored at `offset` are
        acknowledged without being stored twice, and only the part past the end is appended.
        Raises OffsetConflict (carrying the end offset) when `offset` is past the end or the
        overlapping bytes differ, and LogTooLarge when `max_size` (0: no cap) is set and the
        new bytes would take the log past it; either way nothing is stored.
        """
        state = self.state(ref)
        end = state.end_offset
        for _ in range(_APPEND_RACE_RETRIES):
            at = end if offset is None else offset
            if at > end:
                raise OffsetConflict(at, end)
            chunk = data
            if at < end:
                chunk = self._unstored_suffix(state, at, data, end)
                if not chunk:
                    return Appended(state.log_id, end, seal_due=False)
            if max_size and end + len(chunk) > max_size:
                raise LogTooLarge(max_size, end)
            outcome = self.meta.append(state.log_id, end, chunk, self._clock(), self.index_policy)
            if outcome.stored:
                for listener in tuple(self.listeners):
                    listener(state.log_id, outcome.end_offset)
                seal_due = outcome.end_offset - state.sealed_offset >= self.seal_bytes
                return Appended(state.log_id, outcome.end_offset, seal_due)
            end = outcome.end_offset  # another writer appended meanwhile: judge again
        raise OffsetConflict(offset if offset is not None else end, end)

    def _unstored_suffix(self, state: LogState, at: int, data: bytes, end: int) -> bytes:
        """The part of `data` (meant for offset `at < end`) past `end`, if the rest matches the log."""
        overlap = min(len(data), end - at)
        if at < state.start_offset:
            raise OffsetConflict(at, end)
        if self._reader.read(state.log_id, at, at + overlap) != data[:overlap]:
            raise OffsetConflict(at, end)
        return data[overlap:]

    # -- sealing ------------------------------------------------------------------------------

    def seal(self, ref: TaskRef) -> int:
        """Seal the whole head of one task log now; returns the number of segments written."""
        return self.seal_log(self.state(ref).log_id, min_head_bytes=1)

    def seal_log(self, log_id: int, min_head_bytes: int | None = None) -> int:
        """Seal the head into segments while it holds at least `min_head_bytes` (`seal_bytes` by default).

        Safe to race with other sealers, in this process or another replica.
        """
        threshold = self.seal_bytes if min_head_bytes is None else min_head_bytes
        with self._sealing_lock:
            if log_id in self._sealing:
                return 0
            self._sealing.add(log_id)
        written = 0
        try:
            while True:
                state = self.meta.log_state_by_id(log_id)
                if state is None or state.head_bytes < max(threshold, 1):
                    return written
                if not self._seal_once(log_id, state.sealed_offset):
                    return written
                written += 1
                self.meta.checkpoint()  # the sealed head rows' pages can now be folded and reused
        finally:
            with self._sealing_lock:
                self._sealing.discard(log_id)

    def _seal_once(self, log_id: int, sealed_offset: int) -> bool:
        chunks = self.meta.head_chunks(log_id, sealed_offset, self.segment_bytes)
        if not chunks:
            return False
        base, end = chunks[0].base_offset, chunks[-1].end_offset
        key = keys.segment_key(*self._owner(log_id), base, end)
        with self._sealing_lock:
            self._writing.add(key)  # not an orphan, whatever the sweep sees meanwhile
        try:
            size = self._put_segment(key, chunks)
            segment = Segment(base_offset=base, length=size, blob_key=key, created_at=self._clock())
            if self.meta.record_segment(log_id, segment):
                return True
            # Lost the race: another sealer recorded this range. Our blob is an orphan unless the
            # winner chose the very same extent (and so the same key).
            if key not in self.meta.segment_keys(key):
                self.blobs.delete(key)
            return False
        finally:
            with self._sealing_lock:
                self._writing.discard(key)

    def _put_segment(self, key: str, chunks: list[HeadChunk]) -> int:
        try:
            return self.blobs.put(key, (c.data for c in chunks))
        except OSError as exc:  # a local directory's; the head keeps the bytes, a later seal retries
            if exc.errno in _NO_SPACE:
                raise StorageFull("segment store") from exc
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise StorageNotWritable("the segment store", exc.strerror or str(exc)) from exc
            raise

    def _owner(self, log_id: int) -> tuple[str, str]:
        owner = self.meta.log_owner(log_id)
        if owner is None:
            raise JobNotFound(str(log_id))
        return owner

    def seal_due(self, idle_seconds: float) -> int:
        """Seal every head idle for `idle_seconds` or at least `seal_bytes` large; returns segments written."""
        due = self.meta.logs_to_seal(self._clock() - idle_seconds, self.seal_bytes)
        written = sum(self.seal_log(log_id, min_head_bytes=1) for log_id in due)
        self.meta.checkpoint()
        return written

    def apply_retention(self, max_age_seconds: float, *, dry_run: bool = False) -> list[Expired]:
        """Drop every task log's sealed segments created more than `max_age_seconds` ago, oldest
        first, advancing its start offset (see `jobtail.core.retention`); `max_age_seconds` <= 0
        keeps everything. Returns what was (with `dry_run`: would be) dropped, per log."""
        if max_age_seconds <= 0:
            return []
        cutoff = self._clock() - max_age_seconds
        return apply_retention(self.meta, self.blobs, self._lines, cutoff, dry_run=dry_run)

    def sweep_orphans(self, grace_seconds: float) -> list[str]:
        """Delete blobs that no segment record names, and what blob writes that never completed
        left (`BlobStore.sweep_partial`), older than `grace_seconds`; returns their names.

        Such blobs are left by a sealer that died between writing a blob and recording it, or
        that lost a race; partial writes by a sealer killed mid-write. The grace period
        protects seals in progress elsewhere.
        """
        cutoff = self._clock() - grace_seconds
        # In this order, a seal of this process is never mistaken for an orphan, whatever the
        # grace: a listed blob was put, so its seal is either still in `_writing` or recorded.
        candidates = [blob for blob in self.blobs.list(keys.JOBS_PREFIX) if blob.modified < cutoff]
        with self._sealing_lock:
            writing = set(self._writing)
        recorded = self.meta.segment_keys(keys.JOBS_PREFIX)
        removed = []
        for blob in candidates:
            if blob.key not in recorded and blob.key not in writing:
                self.blobs.delete(blob.key)
                removed.append(blob.key)
        return removed + self.blobs.sweep_partial(keys.JOBS_PREFIX, cutoff)
