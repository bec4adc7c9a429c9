"""Sealing: a task log's head written into an immutable segment blob and recorded, safely against
racing sealers in this process and other replicas; and the sweep of what dead sealers left.

A seal takes up to `segment_bytes` of head chunks from the sealed offset, writes their bytes and
their arrival trailer (`jobtail.core.arrivals`) as one blob, then records the segment (releasing
those head chunks) only if the sealed offset is still the segment's base. Where the head offers
a local file holding exactly that (`LogHeads.head_as_segment`) and the blob store can take it
without a copy (`BlobStore.adopt`), that file becomes the blob instead. One seal per log runs
at a time in this process; a log's seals go on while its head stays large enough. A blob written
but not yet recorded is known here (`_writing`), so the sweep never takes it for an orphan.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from jobtail.core import keys
from jobtail.core.arrivals import encode_trailer
from jobtail.core.blob_store import BlobStore
from jobtail.core.errors import JobNotFound, storage_error
from jobtail.core.log_records import LogRecords
from jobtail.core.observer import StoreObserver
from jobtail.core.types import Arrival, HeadChunk, Segment


class Sealing:
    """The seals of one LogStore (see the module docstring). Thread-safe."""

    def __init__(self, logs: LogRecords, blobs: BlobStore, segment_bytes: int, clock: Callable[[], float],
                 observer: StoreObserver) -> None:
        self._logs = logs
        self._observer = observer
        self._blobs = blobs
        self._segment_bytes = segment_bytes
        self._clock = clock
        # False once the blob store declined to adopt a head file (S3, another filesystem): it
        # would decline every time, so later seals copy at once instead of preparing the file first
        self._adopts = True
        self._lock = threading.Lock()
        self._sealing: dict[int, tuple[threading.Lock, int]] = {}  # log id -> (its seal lock, users)
        self._writing: set[str] = set()  # segment keys written but perhaps not recorded yet

    def seal_log(self, log_id: int, min_head_bytes: int, *, wait: bool) -> int:
        """Seal the head into segments while it holds at least `min_head_bytes`; returns the
        segments written. With `wait` False, nothing when a seal of the log is under way in this
        process (it goes on while the head stays large); else after it."""
        with self._lock:
            lock, users = self._sealing.get(log_id) or (threading.Lock(), 0)
            self._sealing[log_id] = (lock, users + 1)
        try:
            if not lock.acquire(blocking=wait):
                return 0
            try:
                return self._seal_while(log_id, min_head_bytes)
            finally:
                lock.release()
        finally:
            with self._lock:
                lock, users = self._sealing[log_id]
                if users > 1:
                    self._sealing[log_id] = (lock, users - 1)
                else:
                    del self._sealing[log_id]

    def _seal_while(self, log_id: int, min_head_bytes: int) -> int:
        written = 0
        while True:
            state = self._logs.log_state_by_id(log_id)
            if state is None or state.head_bytes < max(min_head_bytes, 1):
                return written
            if not self._seal_once(log_id, state.sealed_offset):
                return written
            written += 1
            self._logs.checkpoint()  # the sealed head rows' pages can now be folded and reused

    def _seal_once(self, log_id: int, sealed_offset: int) -> bool:
        owner = self._logs.log_owner(log_id)
        if owner is None:
            raise JobNotFound(str(log_id))
        in_place = self._logs.head_as_segment(log_id, sealed_offset, self._segment_bytes) if self._adopts else None
        if in_place is not None:  # the head's own file becomes the segment, if the blob store can link it
            path, end = in_place
            key = keys.segment_key(*owner, sealed_offset, end)
            with self._lock:
                self._writing.add(key)
            try:
                started = time.perf_counter()
                try:
                    adopted = self._adopt(key, path)
                except FileNotFoundError:  # another replica sealed that file and its name went: copy, below
                    adopted = None
                if adopted:
                    return self._record(log_id, key, sealed_offset, end, started)
                if adopted is False:
                    self._adopts = False
            finally:
                with self._lock:
                    self._writing.discard(key)
        chunks = self._logs.head_to_seal(log_id, sealed_offset, self._segment_bytes)
        if not chunks:
            return False
        base, end = chunks[0].base_offset, chunks[-1].end_offset
        key = keys.segment_key(*owner, base, end)
        with self._lock:
            self._writing.add(key)  # not an orphan, whatever the sweep sees meanwhile
        try:
            started = time.perf_counter()
            self._put_segment(key, chunks)
            return self._record(log_id, key, base, end, started)
        finally:
            with self._lock:
                self._writing.discard(key)

    def _record(self, log_id: int, key: str, base: int, end: int, started: float) -> bool:
        """Record the written blob `key` as the segment [base, end); False (and the blob deleted
        unless the winner chose the same key) when another sealer recorded that range first."""
        segment = Segment(base_offset=base, length=end - base, blob_key=key, created_at=self._clock())
        if self._logs.record_segment(log_id, segment):
            self._observer.sealed(end - base, time.perf_counter() - started)
            return True
        # Lost the race: another sealer recorded this range. Our blob is an orphan unless the
        # winner chose the very same extent (and so the same key).
        if key not in self._logs.segment_keys(key):
            self._blobs.delete(key)
        return False

    def _adopt(self, key: str, path: str) -> bool:
        try:
            return self._blobs.adopt(key, path)
        except OSError as exc:
            raise storage_error(exc, "segment store") from exc

    def _put_segment(self, key: str, chunks: list[HeadChunk]) -> None:
        """Write the chunks' bytes and, after them, their arrival trailer."""
        trailer = encode_trailer(chunks[0].base_offset, [Arrival(c.base_offset, c.arrived_us) for c in chunks])
        try:
            self._blobs.put(key, [*(c.data for c in chunks), trailer])
        except OSError as exc:  # a local directory's; the head keeps the bytes, a later seal retries
            raise storage_error(exc, "segment store") from exc

    def sweep_orphans(self, older_than: float) -> list[str]:
        """Delete blobs that no segment record names, and what blob writes that never completed
        left (`BlobStore.sweep_partial`), last written before `older_than`; returns their names.

        Such blobs are left by a sealer that died between writing a blob and recording it, or
        that lost a race; partial writes by a sealer killed mid-write. The grace period before
        `older_than` protects seals in progress elsewhere.
        """
        # In this order, a seal of this process is never mistaken for an orphan, whatever the
        # grace: a listed blob was put, so its seal is either still in `_writing` or recorded.
        candidates = [blob for blob in self._blobs.list(keys.JOBS_PREFIX) if blob.modified < older_than]
        with self._lock:
            writing = set(self._writing)
        recorded = self._logs.segment_keys(keys.JOBS_PREFIX)
        removed = []
        for blob in candidates:
            if blob.key not in recorded and blob.key not in writing:
                self._blobs.delete(blob.key)
                removed.append(blob.key)
        return removed + self._blobs.sweep_partial(keys.JOBS_PREFIX, older_than)
