"""Local directory blob backend: `file:///path/to/dir`.

An object is written to a temporary file beside its final name, fsynced, renamed into place
and the directory fsynced, so a crash leaves either the whole object or a `.tmp` leftover
(which `list` hides and `sweep_tmp` removes), never a torn object.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

from jobtail.blobs.base import BlobInfo, BlobNotFound

_TMP_SUFFIX = ".tmp"


class LocalBlobStore:
    def __init__(self, root: Path, tmp_grace_seconds: float = 3600.0) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._sweep_tmp(time.time() - tmp_grace_seconds)

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") for p in parts) or key.endswith(_TMP_SUFFIX):
            raise ValueError(f"invalid blob key {key!r}")
        return self.root.joinpath(*parts)

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}{_TMP_SUFFIX}")
        size = 0
        try:
            with open(tmp, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                    size += len(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return size

    def read(self, key: str, start: int, end: int) -> bytes:
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(key) from None
        try:
            return os.pread(fd, max(0, end - start), start)
        except IsADirectoryError:
            raise BlobNotFound(key) from None
        finally:
            os.close(fd)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except (IsADirectoryError, NotADirectoryError):
            pass  # a key that names a directory, or runs through a file, holds no object

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        found = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.endswith(_TMP_SUFFIX):
                    continue
                path = Path(dirpath, name)
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    st = path.stat()
                    found.append(BlobInfo(key, st.st_size, st.st_mtime))
        yield from sorted(found, key=lambda b: b.key)

    def _sweep_tmp(self, older_than: float) -> None:
        """Remove temporary files left by writers that died (old enough not to be in progress)."""
        for path in self.root.rglob(f"*{_TMP_SUFFIX}"):
            try:
                if path.stat().st_mtime < older_than:
                    path.unlink()
            except FileNotFoundError:
                pass

    def close(self) -> None:
        pass


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_local(url: str) -> LocalBlobStore:
    parsed = urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise ValueError(f"file URLs name a local directory: file:///path, not {url!r}")
    return LocalBlobStore(Path(unquote(parsed.path)))
