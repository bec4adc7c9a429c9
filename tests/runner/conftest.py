"""Fixtures for the local executor's tests: live servers that run real processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.live import LiveServer
from support.runners import Runners

from jobtail.core.store import LogStore


@pytest.fixture
def runners(tmp_path: Path, store_factory: Callable[..., LogStore]) -> Iterator[Runners]:
    started = Runners(tmp_path, store_factory)
    yield started
    started.stop_all()


@pytest.fixture
def runner(runners: Runners) -> LiveServer:
    return runners.start()
