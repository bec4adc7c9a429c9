"""In-memory blob backend: `memory://`. Process-local and lost on exit; for tests and trials."""

from __future__ import annotations

import builtins  # `list` is a method name below
import threading
import time
from collections.abc import Iterable, Iterator

from jobtail.core.blob_store import BlobInfo, BlobNotFound


class MemoryBlobStore:
    def __init__(self) -> None:
        self._objects: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        data = b"".join(chunks)
        with self._lock:
            self._objects[key] = (data, time.time())
        return len(data)

    def read(self, key: str, start: int, end: int) -> bytes:
        with self._lock:
            found = self._objects.get(key)
        if found is None:
            raise BlobNotFound(key)
        return found[0][start:end]

    def delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(key, None)

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        with self._lock:
            items = sorted((k, v) for k, v in self._objects.items() if k.startswith(prefix))
        for key, (data, modified) in items:
            yield BlobInfo(key, len(data), modified)

    def sweep_partial(self, prefix: str, older_than: float) -> builtins.list[str]:
        return []  # a put is one assignment: nothing is ever left half written

    def adopt(self, key: str, path: str) -> bool:
        return False  # nothing local to link: the caller puts the bytes

    def close(self) -> None:
        pass


def open_memory(url: str) -> MemoryBlobStore:
    return MemoryBlobStore()
