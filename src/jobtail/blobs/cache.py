"""A read cache on local disk for a remote blob store: sealed segments read once from S3, then
from a local file.

`CachedBlobStore` wraps another BlobStore (wiring chooses it for remote blob URLs when
`segment_cache_bytes` > 0). Segments are immutable, so a cached byte never goes stale; what the
cache must get right is sharing, bounds and damage:

- **Blocks, not whole segments.** A segment is cached as aligned blocks of `block_bytes` (1 MiB),
  one file each. A preview reads the last 5 MiB of a log whose segments may be 64 MiB: caching
  whole segments would make its first read fetch 64 MiB to use 5, and a search or a line page
  that touches a segment once would fill the cache with bytes nobody reads. A miss fetches the
  missing run of blocks with one ranged GET (at most a block more than asked on either side).
- **Shared by processes and threads.** The directory (under the data directory) is the only
  state: `--workers N` share it. A block is written to a temporary file and renamed into place,
  so a reader sees a whole file or none; two processes filling the same block write the same bytes.
- **Least recently used goes first.** A hit sets the file's mtime (at most once a second per
  file); after a miss is filled, the directory is scanned and the oldest files are removed until
  the total fits `capacity`. Removal is `unlink`, which never breaks a reader that has the file
  open: it reads the whole block through its descriptor.
- **Damage is a miss.** Each file starts with a header (magic, length, CRC-32 of the data). A
  file whose size disagrees with its header (truncated: a crash, a full disk) is removed and
  refetched on every read; the CRC is checked the first time a process reads a file (the check
  costs ~0.7 ms per MiB, which a repeated preview would otherwise pay every time), after which
  the file is trusted as the local blob backend trusts its files.
"""

from __future__ import annotations

import builtins  # `list` is a method name below
import contextlib
import hashlib
import os
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from jobtail.core.blob_store import BlobInfo, BlobStore

BLOCK_BYTES = 1024 * 1024
_HEADER = struct.Struct("<4sII")  # magic, data length, CRC-32 of the data
_MAGIC = b"JTc1"
_TMP_SUFFIX = ".tmp"
_TMP_GRACE_SECONDS = 60.0  # a temporary file older than this is a dead writer's
_TOUCH_SECONDS = 1.0  # a hit updates the mtime only when it is older than this
_VERIFIED_MAX = 65536  # (name, inode) pairs remembered as checked, per process


class CachedBlobStore:
    """`inner` with reads served from blocks cached in `directory`, at most `capacity` bytes of
    files. `namespace` (the blob URL) keeps two stores' equal keys apart; `on_lookup(hit, blocks)`
    counts the blocks each read found or missed (for metrics)."""

    def __init__(self, inner: BlobStore, directory: Path, capacity: int, namespace: str = "",
                 block_bytes: int = BLOCK_BYTES, on_lookup: Callable[[bool, int], None] | None = None) -> None:
        if block_bytes < 1:
            raise ValueError("block_bytes must be positive")
        self.inner, self.directory, self.capacity = inner, directory, capacity
        self.block_bytes = block_bytes
        self._namespace = namespace.encode()
        self._on_lookup = on_lookup
        self._verified: set[tuple[str, int]] = set()
        self._evicting = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- the BlobStore protocol ---------------------------------------------------------------

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        return self.inner.put(key, chunks)

    def adopt(self, key: str, path: str) -> bool:
        return self.inner.adopt(key, path)

    def read(self, key: str, start: int, end: int) -> bytes:
        start = max(start, 0)
        if end <= start:
            return self.inner.read(key, start, end)  # reports a missing key
        size = self.block_bytes
        first, last = start // size, (end - 1) // size
        stem = self._stem(key)
        blocks: list[bytes | memoryview] = []  # contiguous from block `first`; a short one is the last
        filled = False
        index = first
        while index <= last:
            data = self._load(stem, index)
            if data is not None:
                self._looked_up(True, 1)
                blocks.append(data)
                if len(data) < size:
                    break  # the object ends in this block
                index += 1
                continue
            run_end = index + 1  # fetch the whole run of missing blocks with one read
            while run_end <= last and not os.path.exists(self._path(stem, run_end)):
                run_end += 1
            self._looked_up(False, run_end - index)
            fetched = self.inner.read(key, index * size, run_end * size)
            for at in range(0, len(fetched), size):
                piece = fetched[at : at + size]
                self._store(stem, index + at // size, piece)
                blocks.append(piece)
                filled = True
            if len(fetched) < (run_end - index) * size:
                break  # the object ends in this run
            index = run_end
        if filled:
            self._evict()
        pieces = []
        pos = first * size
        for block in blocks:
            lo, hi = max(start - pos, 0), min(end - pos, len(block))
            if hi > lo:
                pieces.append(memoryview(block)[lo:hi])
            pos += len(block)
        return b"".join(pieces)

    def _looked_up(self, hit: bool, blocks: int) -> None:
        if self._on_lookup is not None:
            self._on_lookup(hit, blocks)

    def delete(self, key: str) -> None:
        self.inner.delete(key)
        prefix = self._stem(key) + "-"
        with contextlib.suppress(FileNotFoundError), os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.name.startswith(prefix) and not entry.name.endswith(_TMP_SUFFIX):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        return self.inner.list(prefix)

    def sweep_partial(self, prefix: str, older_than: float) -> builtins.list[str]:
        return self.inner.sweep_partial(prefix, older_than)

    def close(self) -> None:
        self.inner.close()

    # -- blocks on disk -------------------------------------------------------------------------

    def _stem(self, key: str) -> str:
        return hashlib.blake2b(self._namespace + b"\0" + key.encode(), digest_size=16).hexdigest()

    def _path(self, stem: str, index: int) -> str:
        return os.path.join(self.directory, f"{stem}-{index}")

    def _load(self, stem: str, index: int) -> memoryview | None:
        """Block `index`'s bytes, or None when it is not cached or is damaged (then removed)."""
        path = self._path(stem, index)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            st = os.fstat(fd)
            raw = os.pread(fd, st.st_size, 0)
            if time.time() - st.st_mtime > _TOUCH_SECONDS:
                with contextlib.suppress(OSError):  # a read-only cache still serves
                    os.utime(fd)
        finally:
            os.close(fd)
        data = self._check(path, st.st_ino, raw)
        if data is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return data

    def _check(self, path: str, inode: int, raw: bytes) -> memoryview | None:
        if len(raw) < _HEADER.size:
            return None
        magic, length, crc = _HEADER.unpack_from(raw)
        if magic != _MAGIC or length != len(raw) - _HEADER.size:
            return None
        data = memoryview(raw)[_HEADER.size :]
        seen = (path, inode)
        if seen not in self._verified:
            if zlib.crc32(data) != crc:
                return None
            if len(self._verified) >= _VERIFIED_MAX:
                self._verified.clear()
            self._verified.add(seen)
        return data

    def _store(self, stem: str, index: int, data: bytes) -> None:
        if len(data) + _HEADER.size > self.capacity:
            return
        path = self._path(stem, index)
        tmp = f"{path}.{uuid.uuid4().hex}{_TMP_SUFFIX}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError:
            return  # a cache that cannot write still reads through
        try:
            try:
                view = memoryview(_HEADER.pack(_MAGIC, len(data), zlib.crc32(data)) + data)
                while view:
                    view = view[os.write(fd, view) :]
                inode = os.fstat(fd).st_ino
            finally:
                os.close(fd)
            os.rename(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return
        self._verified.add((path, inode))

    def _evict(self) -> None:
        """Remove least recently used files until the directory holds at most `capacity` bytes.
        Every writer scans after its write, one thread of a process at a time, so once writers
        are done the last scan has seen every block; processes evicting at once only remove a
        little more than needed."""
        with self._evicting:
            now = time.time()
            files: list[tuple[float, int, str]] = []
            total = 0
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if entry.name.endswith(_TMP_SUFFIX):
                        if now - st.st_mtime > _TMP_GRACE_SECONDS:
                            with contextlib.suppress(FileNotFoundError):
                                os.unlink(entry.path)
                        continue
                    files.append((st.st_mtime, st.st_size, entry.path))
                    total += st.st_size
            if total <= self.capacity:
                return
            files.sort()
            for _mtime, size, path in files:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                total -= size
                if total <= self.capacity:
                    break
