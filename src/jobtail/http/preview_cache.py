"""A bounded memory of encoded preview responses, so an unchanged tail is never re-encoded.

Decoding and JSON-encoding 5 MiB costs far more than reading or sending it (see the README's
architecture notes), and a log that has not grown has the same preview. Entries are keyed by
task log and valid for exactly one `(start_offset, end_offset)`: a log's bytes below its end
offset never change, so an entry can only become stale by the log moving, which the key catches.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class PreviewCache:
    """LRU over task logs, at most one entry per log, bounded by total body bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str], tuple[int, int, bytes]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, log: tuple[str, str], start: int, end: int) -> bytes | None:
        with self._lock:
            entry = self._entries.get(log)
            if entry is None or entry[0] != start or entry[1] != end:
                return None
            self._entries.move_to_end(log)
            return entry[2]

    def put(self, log: tuple[str, str], start: int, end: int, body: bytes) -> None:
        if len(body) > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(log, None)
            if old is not None:
                self._size -= len(old[2])
            if old is not None and old[1] > end:
                self._entries[log] = old  # a newer preview is already here; keep it
                self._size += len(old[2])
                return
            self._entries[log] = (start, end, body)
            self._size += len(body)
            while self._size > self.max_bytes:
                _, (_, _, evicted) = self._entries.popitem(last=False)
                self._size -= len(evicted)
