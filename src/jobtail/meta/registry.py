"""Choose a metadata backend by URL scheme; backend libraries are imported only when used."""

from __future__ import annotations

import importlib

from jobtail.meta.base import MetaStore

BACKENDS = {
    "sqlite": "jobtail.meta.sqlite:open_sqlite",
    "postgresql": "jobtail.meta.postgres:open_postgres",
    "postgres": "jobtail.meta.postgres:open_postgres",
}


def scheme_of(url: str) -> str:
    """The backend name of a database URL (`sqlite`, `postgresql`, ...), driver suffix removed."""
    return url.split(":", 1)[0].split("+", 1)[0].lower()


def open_meta(url: str) -> MetaStore:
    """Open the metadata store named by `url` (`sqlite:///…` or `postgresql://…`)."""
    scheme = scheme_of(url)
    if scheme not in BACKENDS:
        raise ValueError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://…")
    module, _, name = BACKENDS[scheme].partition(":")
    opener = getattr(importlib.import_module(module), name)
    store: MetaStore = opener(url)
    return store
