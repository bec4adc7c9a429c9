"""The blob store interface the engine holds sealed segments in: immutable objects addressed by key.

Implemented by `jobtail.blobs` (local directory, S3, memory); every backend passes the same
conformance suite (`tests/blobs/test_conformance.py`).
"""

from __future__ import annotations

import builtins  # `list` is a method name below
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlparse

__all__ = ["BlobInfo", "BlobNotFound", "BlobStore", "s3_bucket_and_prefix"]


@dataclass(frozen=True, slots=True)
class BlobInfo:
    key: str
    size: int
    modified: float  # epoch seconds


class BlobNotFound(Exception):
    """The key does not exist (backend-level; the engine turns it into a StorageError)."""


class BlobStore(Protocol):
    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        """Store the concatenation of `chunks` under `key` and return its size.

        Durable and atomic on return: a reader sees either nothing or the whole object, never
        a prefix, even if the process dies midway. Overwriting a key with identical bytes is allowed.
        """

    def adopt(self, key: str, path: str) -> bool:
        """Make the complete, durable local file `path` the object `key` without copying its bytes,
        where this backend can (a local directory on the same filesystem: a hard link); return
        False where it cannot, and the caller `put`s the bytes instead. Nobody may change the file
        afterwards. Durable and atomic on return, as `put`; adopting a key that exists keeps it
        (a key names an extent, so its bytes are the same)."""

    def read(self, key: str, start: int, end: int) -> bytes:
        """Bytes `[start, end)` of the object; fewer only if the object is shorter.

        Raises `BlobNotFound` when the key does not exist.
        """

    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        """Objects whose key starts with `prefix`, in key order."""

    def sweep_partial(self, prefix: str, older_than: float) -> builtins.list[str]:
        """Remove what writes that never completed left under `prefix` (a killed writer's
        temporary file, an unfinished multipart upload) and that was last written before
        `older_than` (epoch seconds); a write the backend knows to be in progress is kept.
        Returns names of what was removed (for logs; they are not keys)."""

    def close(self) -> None:
        """Release resources. Idempotent."""


def s3_bucket_and_prefix(url: str) -> tuple[str, str]:
    """The bucket and the key prefix (percent-decoded, ending with `/` unless empty) that the
    store of ``s3://BUCKET/PREFIX?…`` reads and writes under: how `jobtail.blobs.s3` reads its
    URL, and how the settings find the segment store that no export may reach."""
    parsed = urlparse(url)
    if not parsed.netloc:
        raise ValueError(f"S3 blob URLs name a bucket: s3://BUCKET/PREFIX, not {url!r}")
    prefix = unquote(parsed.path).strip("/")
    return parsed.netloc, prefix + "/" if prefix else ""
