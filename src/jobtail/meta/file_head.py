"""The embedded default's head: each task log's unsealed bytes in append-only files on local disk,
the database keeping only their offsets (`LogHeads`, with `SqlLogRecords` for everything else).

An append writes its bytes once into the log's current head file and `fdatasync`s it, then
commits the same head row as the database head does (offset, length, arrival time, the index
entries; `data` left empty) and the log's new end offset. So the database's commit no longer
carries the bytes (no WAL copy, no checkpoint copy), and a byte is acknowledged only once both
are durable. Appends to different logs whose files became durable while another commit ran
share the next commit (`jobtail.meta.group_commit`): one write lock and one WAL fsync for all.
Files live under `heads_dir/<log id>/<base offset, 20 digits>.head`; a file holds the log's
bytes from its base offset on, at position `offset - base`.

Crash safety: a SIGKILL or power cut between the file write and the commit leaves bytes in the
file past the committed end. They were never acknowledged and nothing reads them (reads go by
the committed head rows); the next append at that end writes over them and cuts the file there.
An append is idempotent by offset exactly as with the database head, because the commit still
compares the expected end.

Appends to one log are serialised by an exclusive `flock` on `heads_dir/<log id>/lock` (across
threads and processes: `--workers` share the files). A seal never waits for that lock. It seals
a head file in place (`head_as_segment`: the arrival trailer written after the file's bytes, the
file then linked as the segment blob by `BlobStore.adopt`) once no append will write to it
again: a later file exists, or the seal starts one at the log's end, taking the lock only if it
is free at that instant. Otherwise it copies committed rows' bytes (`head_to_seal`). The next
append after a seal starts a new head file when the current one is partly sealed or holds
`rotate_bytes`, so a file never changes once its bytes are all sealed; such files lose their
name after the seal that covered them (with the lock if it is free at once, else by the next
append, which holds it anyway). A reader that finds a file gone re-reads the sealed offset: the bytes
were sealed, and the engine reads them from the segment (the head is asked first, then the
segments). Directories of deleted logs (ids are never reused) go in the periodic `checkpoint()`.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, bindparam, func, insert, select, update
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from jobtail.core.arrivals import encode_trailer
from jobtail.core.errors import JobNotFound, StorageError, storage_error
from jobtail.core.types import AppendOutcome, Arrival, HeadChunk, IndexEntry, IndexPolicy, Segment
from jobtail.meta.group_commit import GroupCommit
from jobtail.meta.schema import head_chunks, index_entries, task_logs
from jobtail.meta.sql_logs import _HEAD_OVERLAPPING, SqlLogRecords

ROTATE_BYTES = 64 * 1024 * 1024  # a head file holds at most about this much before the next starts
SWEEP_SECONDS = 60.0  # at most this often, `checkpoint()` removes the head files of deleted logs
# At most this often `checkpoint()` copies the WAL into the database (two fsyncs): a seal asks after
# each segment, but here the WAL holds a few rows per append, not the bytes, so it grows slowly.
CHECKPOINT_SECONDS = 1.0
ROTATE_WAIT_SECONDS = 0.5  # a seal waits at most this long for the next append to start a new head file
ROTATE_POLL_SECONDS = 0.01  # meanwhile it tries the appenders' lock this often
SCAN_APART_BYTES = 256 * 1024  # an append this large has its newlines counted while its bytes go to disk
_SUFFIX = ".head"

Fetch = Callable[[str, Sequence[Any]], Sequence[Any] | None]  # (sql, parameters) -> first row


def _positional(engine: Engine, statement: ClauseElement) -> tuple[str, list[str]]:
    """`statement` compiled once for `engine`'s (positional) paramstyle, and its parameters' order."""
    compiled = statement.compile(dialect=engine.dialect)
    assert isinstance(compiled, SQLCompiler)
    return str(compiled), list(compiled.positiontup or ())


@dataclass(frozen=True, slots=True)
class _Tail:
    """What an append needs of its log, read under the appenders' lock (only appends change it)."""

    sealed_offset: int
    end_offset: int
    line_count: int
    last_arrived_us: int | None
    last_entry: IndexEntry | None


@dataclass(frozen=True, slots=True)
class _Commit:
    """One append's offsets, ready to commit: its head row, index entries and the log's new tail."""

    log_id: int
    expected_end: int
    length: int
    arrived_us: int
    line_count: int
    entries: list[IndexEntry]


class FileHeadLogRecords(SqlLogRecords):
    """`LogHeads` with the bytes in head files (module docstring); `LogSegments` as SqlLogRecords.

    `fetch` reads one row of the latest committed state without a pool checkout (the SQLite
    backend's `LocalReads.fetchone`): an append reads its log's tail with it under the lock.
    Appends' commits go through a `GroupCommit`: appends to different logs whose bytes became
    durable while another commit ran share the next transaction.

    `before_commit`: called after an append's bytes are durable in the file and before its
    commit (a fault-injection point for tests: killing the process there is the crash the
    design guards against); None in production.
    """

    def __init__(self, writer: Engine, reader: Engine, *, heads_dir: Path, fetch: Fetch,
                 rotate_bytes: int = ROTATE_BYTES) -> None:
        super().__init__(writer, reader, row_locks=False)
        self.heads_dir = heads_dir
        self.rotate_bytes = rotate_bytes
        self.before_commit: Callable[[], None] | None = None
        self._fetch = fetch
        self._commits: GroupCommit[_Commit, bool] = GroupCommit(self._commit_all)
        self._rotate: set[int] = set()  # logs whose next append starts a new head file (a seal waits for it)
        self._rotated = threading.Condition()
        self._scans = ThreadPoolExecutor(max_workers=2, thread_name_prefix="jobtail-head-scan")
        c = task_logs.c
        self._tail_sql = _positional(reader, select(
            c.sealed_offset, c.end_offset, c.line_count, c.last_arrived_us, c.index_offset, c.index_line,
            c.index_time).where(c.id == bindparam("log_id")))
        # Guarded by the expected end: an update that matches nothing (the log was deleted) commits nothing.
        self._advance_sql = _positional(writer, update(task_logs).where(and_(
            c.id == bindparam("log_id"), c.end_offset == bindparam("expected_end"))).values(
            end_offset=bindparam("end"), line_count=bindparam("lines"), last_arrived_us=bindparam("arrived"),
            index_offset=func.coalesce(bindparam("index_offset"), c.index_offset),
            index_line=func.coalesce(bindparam("index_line"), c.index_line),
            index_time=func.coalesce(bindparam("index_time"), c.index_time)))
        self._head_row_sql = _positional(writer, insert(head_chunks).values(
            log_id=bindparam("log_id"), base_offset=bindparam("base"), length=bindparam("length"),
            arrived_us=bindparam("arrived"), data=bindparam("data")))
        self._entry_sql = _positional(writer, insert(index_entries).values(
            log_id=bindparam("log_id"), offset=bindparam("offset"), line=bindparam("line"),
            appended_at=bindparam("at")))
        self._checkpointed_at, self._swept_at = float("-inf"), 0.0
        self._sweep_lock = threading.Lock()
        heads_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- files --------------------------------------------------------------------------------

    def _dir(self, log_id: int) -> Path:
        return self.heads_dir / str(log_id)

    def _bases(self, log_id: int) -> list[int]:
        """Base offsets of the log's head files, ascending."""
        try:
            names = os.listdir(self._dir(log_id))
        except FileNotFoundError:
            return []
        return sorted(int(n[: -len(_SUFFIX)]) for n in names if n.endswith(_SUFFIX) and n[: -len(_SUFFIX)].isdigit())

    def _path(self, log_id: int, base: int) -> Path:
        return self._dir(log_id) / f"{base:020d}{_SUFFIX}"

    @contextmanager
    def _append_lock(self, log_id: int, *, wait: bool = True) -> Iterator[bool]:
        """The log's appenders' lock (exclusive flock); yields False if `wait` is off and it is held."""
        lock = self._dir(log_id) / "lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:  # the log's first append
            lock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases the flock

    def _remove_sealed(self, log_id: int, bases: list[int], sealed_offset: int, end_offset: int) -> list[int]:
        """Delete the files whose bytes are all sealed, and any past the end (a crashed
        append's new file); with the appenders' lock held. Returns the bases left."""
        kept = []
        for i, base in enumerate(bases):
            upto = bases[i + 1] if i + 1 < len(bases) else end_offset
            if upto <= sealed_offset or base > end_offset:
                self._path(log_id, base).unlink(missing_ok=True)
            else:
                kept.append(base)
        return kept

    # -- appending ----------------------------------------------------------------------------

    def append(
        self, log_id: int, expected_end: int, data: bytes, arrived_us: int, policy: IndexPolicy
    ) -> AppendOutcome:
        with self._append_lock(log_id):
            tail = self._tail(log_id)
            if tail is None:
                raise JobNotFound(f"(task log {log_id})")
            if tail.end_offset != expected_end:
                return AppendOutcome(stored=False, end_offset=tail.end_offset)
            arrived_us = max(arrived_us, tail.last_arrived_us or 0)  # never earlier than the previous append
            scan = partial(policy.scan, tail.last_entry, expected_end, tail.line_count, data, arrived_us / 1e6)
            # Counting a MiB's newlines (~0.3 ms) fits inside its fdatasync (~0.6 ms), which releases the GIL.
            scanning = self._scans.submit(scan) if len(data) >= SCAN_APART_BYTES else None
            try:
                self._write_head(log_id, tail, data)
            except OSError as exc:
                raise storage_error(exc, "head files") from exc
            entries, newlines = scan() if scanning is None else scanning.result()
            if self.before_commit is not None:
                self.before_commit()
            pending = _Commit(log_id, expected_end, len(data), arrived_us, tail.line_count + newlines, entries)
            if self._commits.submit(pending):
                return AppendOutcome(stored=True, end_offset=expected_end + len(data))
        state = self.log_state_by_id(log_id)  # deleted meanwhile (else the lock kept the end where it was)
        if state is None:
            raise JobNotFound(f"(task log {log_id})")
        return AppendOutcome(stored=False, end_offset=state.end_offset)

    def close(self) -> None:
        """Stop the helper threads; appends afterwards raise RuntimeError."""
        self._scans.shutdown()

    def _tail(self, log_id: int) -> _Tail | None:
        sql, _ = self._tail_sql
        row = self._fetch(sql, (log_id,))
        if row is None:
            return None
        sealed, end, lines, arrived, index_offset, index_line, index_time = row
        entry = None if index_offset is None else IndexEntry(index_offset, index_line, index_time)
        return _Tail(sealed, end, lines, arrived, entry)

    def _commit_all(self, pending: Sequence[_Commit]) -> list[bool]:
        """Commit the offsets of `pending` appends (to different logs) in one transaction;
        whether each was stored (not if its log was deleted since its tail was read)."""
        stored = []
        with self._write() as conn:
            for p in pending:
                values: dict[str, Any] = {
                    "log_id": p.log_id, "expected_end": p.expected_end, "end": p.expected_end + p.length,
                    "lines": p.line_count, "arrived": p.arrived_us, "base": p.expected_end, "length": p.length,
                    "data": b"", "index_offset": None, "index_line": None, "index_time": None,  # NULL: unchanged
                }
                if p.entries:
                    newest = p.entries[-1]
                    values.update(index_offset=newest.offset, index_line=newest.line, index_time=newest.appended_at)
                sql, names = self._advance_sql
                if conn.exec_driver_sql(sql, tuple(values[n] for n in names)).rowcount != 1:
                    stored.append(False)
                    continue
                sql, names = self._head_row_sql
                conn.exec_driver_sql(sql, tuple(values[n] for n in names))
                if p.entries:
                    sql, names = self._entry_sql
                    rows = [{"log_id": p.log_id, "offset": e.offset, "line": e.line, "at": e.appended_at}
                            for e in p.entries]
                    conn.exec_driver_sql(sql, [tuple(r[n] for n in names) for r in rows])
                stored.append(True)
        return stored

    def _write_head(self, log_id: int, tail: _Tail, data: bytes) -> None:
        """Put `data` at the log's end in its current head file (a new one if due), durably."""
        end = tail.end_offset
        bases = self._remove_sealed(log_id, self._bases(log_id), tail.sealed_offset, end)
        base = bases[-1] if bases else None
        rotate = log_id in self._rotate  # a seal waits for this file to be done
        if base is None or base < tail.sealed_offset or end - base >= self.rotate_bytes or (rotate and end > base):
            base = end
        path = self._path(log_id, base)
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            at, view = end - base, memoryview(data)
            while view:
                written = os.pwrite(fd, view, at)
                at, view = at + written, view[written:]
            if os.fstat(fd).st_size > at:  # unacknowledged bytes of a crashed append
                os.ftruncate(fd, at)
            os.fdatasync(fd)
        finally:
            os.close(fd)
        if created:  # the new file's directory entry must survive a crash too
            dir_fd = os.open(self._dir(log_id), os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        if rotate:
            with self._rotated:
                self._rotate.discard(log_id)
                self._rotated.notify_all()

    # -- reading ------------------------------------------------------------------------------

    def _with_bytes(self, log_id: int, rows: list[Any]) -> list[HeadChunk]:
        """Head chunks of `rows` (in offset order), their bytes read from the files. Rows that
        hold their bytes (a database head's, from before this head was chosen) keep them. Rows
        whose file is gone were sealed meanwhile: they, and the rows before them, are left out."""
        chunks: list[HeadChunk] = []
        bases: list[int] | None = None
        opened: dict[int, int] = {}
        try:
            for row in rows:
                if row.data or not row.length:
                    chunks.append(HeadChunk(row.base_offset, bytes(row.data), row.arrived_us))
                    continue
                if bases is None:
                    bases = self._bases(log_id)
                base = max((b for b in bases if b <= row.base_offset), default=None)
                data = b""
                if base is not None:
                    if base not in opened:
                        try:
                            opened[base] = os.open(self._path(log_id, base), os.O_RDONLY)
                        except FileNotFoundError:
                            opened[base] = -1
                    if opened[base] >= 0:
                        data = os.pread(opened[base], row.length, row.base_offset - base)
                if len(data) == row.length:
                    chunks.append(HeadChunk(row.base_offset, data, row.arrived_us))
                    continue
                state = self.log_state_by_id(log_id)
                if state is None or row.base_offset + row.length > state.sealed_offset:
                    raise StorageError(f"head bytes [{row.base_offset}, {row.base_offset + row.length}) of "
                                       f"task log {log_id} are missing from {self._dir(log_id)}",
                                       "the head files were removed or damaged; restore them from backup")
                chunks.clear()  # sealed since our snapshot: the segments have these and what precedes
        finally:
            for fd in opened.values():
                if fd >= 0:
                    os.close(fd)
        return chunks

    def head_chunks(self, log_id: int, start: int, end: int) -> list[HeadChunk]:
        with self._read() as conn:
            rows = conn.execute(_HEAD_OVERLAPPING, {"log_id": log_id, "start": start, "end": end}).all()
        return self._with_bytes(log_id, list(rows))

    def head_to_seal(self, log_id: int, start: int, max_bytes: int) -> list[HeadChunk]:
        with self._read() as conn:
            rows = conn.execute(
                select(head_chunks)
                .where(head_chunks.c.log_id == log_id, head_chunks.c.base_offset >= start)
                .order_by(head_chunks.c.base_offset)
            ).all()
        taken, total = [], 0
        for row in rows:
            if total and total + row.length > max_bytes:
                break
            taken.append(row)
            total += row.length
        chunks = self._with_bytes(log_id, taken)
        return chunks if chunks and chunks[0].base_offset == start else []

    # -- sealing ------------------------------------------------------------------------------

    def head_as_segment(self, log_id: int, start: int, max_bytes: int) -> tuple[str, int] | None:
        """The head file starting at `start`, its arrival trailer written after its bytes, once
        appends go to a later file (`_finished`); None if it does not qualify: copy instead."""
        if start not in self._bases(log_id):
            return None
        end = self._finished(log_id, start, max_bytes)
        if end is None or end - start > max_bytes:
            return None
        with self._read() as conn:
            rows = conn.execute(
                select(head_chunks.c.base_offset, head_chunks.c.length, head_chunks.c.arrived_us,
                       func.length(head_chunks.c.data).label("stored"))
                .where(head_chunks.c.log_id == log_id, head_chunks.c.base_offset >= start,
                       head_chunks.c.base_offset < end)
                .order_by(head_chunks.c.base_offset)
            ).all()
        if not rows or rows[0].base_offset != start or any(r.stored for r in rows) \
                or sum(r.length for r in rows) != end - start:
            return None  # sealed meanwhile, or bytes in rows (from a database head): copy
        trailer = encode_trailer(start, [Arrival(r.base_offset, r.arrived_us) for r in rows])
        path = self._path(log_id, start)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return None  # sealed and removed meanwhile
        try:
            size = end - start + len(trailer)
            # Written already (a seal that lost a race may share the inode with a recorded
            # segment): leave it. Otherwise cut what an earlier attempt or a crashed append left.
            if os.fstat(fd).st_size != size or os.pread(fd, len(trailer), end - start) != trailer:
                os.ftruncate(fd, end - start)
                os.pwrite(fd, trailer, end - start)
            os.fdatasync(fd)
        except OSError as exc:
            raise storage_error(exc, "head files") from exc
        finally:
            os.close(fd)
        return str(path), end

    def _finished(self, log_id: int, start: int, max_bytes: int) -> int | None:
        """Where the head file at `start` ends once appends go to a later one; None if the log
        has nothing past `start` or the file would hold more than `max_bytes`. If the current
        file is the one at `start`, the later one is started here when the appenders' lock is
        free at this instant; when an append holds it, the next append is asked to start it
        (the lock is held about all the time while a task writes fast) and this waits for
        that, trying the lock again every ROTATE_POLL_SECONDS (the task may have stopped
        writing), at most ROTATE_WAIT_SECONDS (then None). It never waits for the lock itself."""
        deadline = time.monotonic() + ROTATE_WAIT_SECONDS
        try:
            while True:
                later = [b for b in self._bases(log_id) if b > start]
                if later:
                    return later[0]
                with self._append_lock(log_id, wait=False) as locked:
                    if locked:
                        state = self.log_state_by_id(log_id)
                        if state is None or state.end_offset <= start or state.end_offset - start > max_bytes:
                            return None
                        self._create(log_id, state.end_offset)  # appends go there from now on: this file is done
                        return state.end_offset
                with self._rotated:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    self._rotate.add(log_id)
                    self._rotated.wait(min(remaining, ROTATE_POLL_SECONDS))
        finally:
            with self._rotated:
                self._rotate.discard(log_id)

    def _create(self, log_id: int, base: int) -> None:
        """An empty head file at `base`, its directory entry durable; with the appenders' lock."""
        os.close(os.open(self._path(log_id, base), os.O_WRONLY | os.O_CREAT, 0o600))
        dir_fd = os.open(self._dir(log_id), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def record_segment(self, log_id: int, segment: Segment) -> bool:
        recorded = super().record_segment(log_id, segment)
        if recorded:
            with self._append_lock(log_id, wait=False) as locked:  # never wait for appenders
                if locked and (state := self.log_state_by_id(log_id)) is not None:
                    self._remove_sealed(log_id, self._bases(log_id), state.sealed_offset, state.end_offset)
        return recorded

    def checkpoint(self) -> None:
        """The database's checkpoint, at most every CHECKPOINT_SECONDS; and, at most every
        SWEEP_SECONDS, the head files of task logs that no longer exist (their job was deleted)
        are removed."""
        now = time.monotonic()
        if now - self._checkpointed_at >= CHECKPOINT_SECONDS:
            self._checkpointed_at = now
            super().checkpoint()
        if now - self._swept_at < SWEEP_SECONDS or not self._sweep_lock.acquire(blocking=False):
            return
        try:
            self._swept_at = now
            ids = [int(n) for n in os.listdir(self.heads_dir) if n.isdigit()]
            alive = self.log_ends(ids)
            for log_id in ids:
                if log_id not in alive:
                    shutil.rmtree(self._dir(log_id), ignore_errors=True)
        finally:
            self._sweep_lock.release()
