"""A bounded memory of encoded preview responses, so an unchanged tail is never re-encoded.

Decoding and JSON-encoding 5 MiB costs far more than reading or sending it (see the README's
architecture notes), and a log that has not grown has the same preview. Entries are keyed by
task log and made for one `(start_offset, end_offset)`: a log's bytes below its end offset never
change, so an entry can only become stale by the log moving, which the offsets catch. An entry
made for a later state than a reader's serves that reader too (it holds every byte the reader's
state does, and its own ETag). `get` is a dictionary lookup under a lock: cheap enough to answer
on an event loop.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from jobtail.core.types import EncodedPreview, TaskRef


class PreviewCache:
    """LRU over task logs, at most one entry per log, bounded by total body bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[TaskRef, tuple[int, int, EncodedPreview]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, ref: TaskRef, start: int, end: int) -> EncodedPreview | None:
        """The entry of `ref` if it was made for `[start, end)` or a later state of the log
        (offsets at or past these)."""
        with self._lock:
            entry = self._entries.get(ref)
            if entry is None or entry[0] < start or entry[1] < end:
                return None
            self._entries.move_to_end(ref)
            return entry[2]

    def put(self, ref: TaskRef, start: int, end: int, preview: EncodedPreview) -> None:
        size = len(preview.body or b"")
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(ref, None)
            if old is not None:
                self._size -= len(old[2].body or b"")
            if old is not None and old[1] > end:
                self._entries[ref] = old  # a newer preview is already here; keep it
                self._size += len(old[2].body or b"")
                return
            self._entries[ref] = (start, end, preview)
            self._size += size
            while self._size > self.max_bytes:
                _, (_, _, evicted) = self._entries.popitem(last=False)
                self._size -= len(evicted.body or b"")
