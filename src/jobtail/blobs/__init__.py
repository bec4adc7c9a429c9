"""Blob backends holding sealed segments (local directory, S3, memory). `open_blobs(url)` opens
the one a URL names, `open_cached_blobs` adds the local read cache for remote ones; backend
libraries are imported only then."""

from jobtail.blobs.registry import open_blobs, open_cached_blobs

__all__ = ["open_blobs", "open_cached_blobs"]
