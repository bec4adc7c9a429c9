"""Local directory blob backend: `file:///path/to/dir`.

An object is written to a temporary file beside its final name, fsynced, renamed into place
and the directory fsynced, so a crash leaves either the whole object or a `.tmp` leftover
(which `list` hides), never a torn object. The writer holds an exclusive `flock` on its
temporary file until the rename, so anyone can tell a leftover (nobody holds it: the kernel drops
a dead process's locks) from a write in progress. Leftovers go at the next put into the same
directory (the next seal of the same task log; `adopt` too) and, once older than the cutoff, in `sweep_partial`.
"""

from __future__ import annotations

import builtins  # `list` is a method name below
import errno
import fcntl
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

from jobtail.core.blob_store import BlobInfo, BlobNotFound

_TMP_SUFFIX = ".tmp"
_EMPTY_GRACE_SECONDS = 60.0


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") for p in parts) or key.endswith(_TMP_SUFFIX):
            raise ValueError(f"invalid blob key {key!r}")
        return self.root.joinpath(*parts)

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        for leftover in _temporaries(path.parent):  # an interrupted write of this directory (task log)
            _remove_if_abandoned(leftover, older_than=None)
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}{_TMP_SUFFIX}")
        size = 0
        try:
            with open(tmp, "xb") as f:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # "in progress", until closed (see the module docstring)
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

    def adopt(self, key: str, path: str) -> bool:
        """A hard link to `path` under the key's name (the file head's seal: no copy)."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        for leftover in _temporaries(target.parent):  # as `put` does: an interrupted write of this task log
            _remove_if_abandoned(leftover, older_than=None)
        try:
            os.link(path, target)
        except FileExistsError:
            return True
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):  # another filesystem, no links
                return False
            raise
        _fsync_dir(target.parent)
        return True

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

    def sweep_partial(self, prefix: str, older_than: float) -> builtins.list[str]:
        """Remove temporary files under `prefix` last written before `older_than` that no writer holds."""
        directory = prefix.rpartition("/")[0]  # every match lies below it
        if any(p in (".", "..") for p in directory.split("/")):
            raise ValueError(f"invalid blob prefix {prefix!r}")
        removed = []
        for dirpath, _dirs, _files in os.walk(self.root.joinpath(*directory.split("/")) if directory else self.root):
            relative = Path(dirpath).relative_to(self.root).as_posix()
            relative = "" if relative == "." else relative + "/"
            for path in _temporaries(Path(dirpath)):
                name = relative + path.name
                if name.startswith(prefix) and _remove_if_abandoned(path, older_than):
                    removed.append(name)
        return sorted(removed)

    def close(self) -> None:
        pass


def _temporaries(directory: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(directory) if e.name.endswith(_TMP_SUFFIX)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _remove_if_abandoned(path: Path, older_than: float | None) -> bool:
    """Remove a temporary file that no writer holds and that was last written before `older_than`
    (any time, when None); returns whether it was removed.

    A writer locks its file right after creating it, before the first byte; so an empty one may
    be a write that has not locked it yet, and goes only once a minute older than `older_than`.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False  # renamed into place or removed meanwhile
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        st = os.fstat(fd)
        if st.st_size == 0:
            abandoned = older_than is not None and st.st_mtime < older_than - _EMPTY_GRACE_SECONDS
        else:
            abandoned = older_than is None or st.st_mtime < older_than
        if not abandoned:
            return False
        # By name: should its writer have renamed it meanwhile, the object under the final name stays.
        path.unlink()
        return True
    except (BlockingIOError, FileNotFoundError):
        return False  # a write in progress holds it, or it is gone already
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def directory_of(url: str) -> Path:
    """The local directory a `file://` blob URL names (`file:///path`, `file://localhost/path`,
    percent-encoded); ValueError for another host."""
    parsed = urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise ValueError(f"file URLs name a local directory: file:///path, not {url!r}")
    return Path(unquote(parsed.path))


def open_local(url: str) -> LocalBlobStore:
    return LocalBlobStore(directory_of(url))
