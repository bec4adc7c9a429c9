"""The `meta` fixture of the metadata conformance suites: a fresh database of each backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.meta_records import Meta, open_meta


@pytest.fixture
def meta(meta_url: str) -> Iterator[Meta]:
    opened = open_meta(meta_url)
    try:
        yield opened
    finally:
        opened.close()
