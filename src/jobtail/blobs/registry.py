"""Choose a blob backend by URL scheme; backend modules are imported only when used."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from jobtail.core.blob_store import BlobStore

BACKENDS = {
    "file": "jobtail.blobs.local:open_local",
    "memory": "jobtail.blobs.memory:open_memory",
    "s3": "jobtail.blobs.s3:open_s3",
}


REMOTE = frozenset({"s3"})  # schemes whose reads cross a network: worth a local cache


def open_blobs(url: str) -> BlobStore:
    """Open the blob store named by `url` (`file:///DIR`, `s3://BUCKET/PREFIX?endpoint=...` or `memory://`)."""
    scheme = url.split(":", 1)[0].lower()
    if scheme not in BACKENDS:
        raise ValueError(f"unsupported blob URL {url!r}: use file:///DIR, s3://BUCKET/PREFIX or memory://")
    module, _, name = BACKENDS[scheme].partition(":")
    store: BlobStore = getattr(importlib.import_module(module), name)(url)
    return store


def open_cached_blobs(url: str, cache_dir: Path, cache_bytes: int,
                      on_lookup: Callable[[bool, int], None] | None = None) -> BlobStore:
    """`open_blobs(url)`, behind a read cache of at most `cache_bytes` in `cache_dir` when the
    store is remote and `cache_bytes` > 0 (see `jobtail.blobs.cache`)."""
    store = open_blobs(url)
    if cache_bytes <= 0 or url.split(":", 1)[0].lower() not in REMOTE:
        return store
    from jobtail.blobs.cache import CachedBlobStore

    try:
        return CachedBlobStore(store, cache_dir, cache_bytes, namespace=url, on_lookup=on_lookup)
    except BaseException:
        store.close()
        raise
