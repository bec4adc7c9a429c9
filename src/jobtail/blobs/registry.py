"""Choose a blob backend by URL scheme; backend modules are imported only when used."""

from __future__ import annotations

import importlib

from jobtail.core.blob_store import BlobStore

BACKENDS = {
    "file": "jobtail.blobs.local:open_local",
    "memory": "jobtail.blobs.memory:open_memory",
    "s3": "jobtail.blobs.s3:open_s3",
}


def open_blobs(url: str) -> BlobStore:
    """Open the blob store named by `url` (`file:///DIR`, `s3://BUCKET/PREFIX?endpoint=...` or `memory://`)."""
    scheme = url.split(":", 1)[0].lower()
    if scheme not in BACKENDS:
        raise ValueError(f"unsupported blob URL {url!r}: use file:///DIR, s3://BUCKET/PREFIX or memory://")
    module, _, name = BACKENDS[scheme].partition(":")
    store: BlobStore = getattr(importlib.import_module(module), name)(url)
    return store
