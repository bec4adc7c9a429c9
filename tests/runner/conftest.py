"""Fixtures for the local executor's tests: live servers that run real processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.engine import Engine
from support.live import LiveServer
from support.runners import Runners


@pytest.fixture
def runners(tmp_path: Path, engine_factory: Callable[..., Engine]) -> Iterator[Runners]:
    started = Runners(tmp_path, engine_factory)
    yield started
    started.stop_all()


@pytest.fixture
def runner(runners: Runners) -> LiveServer:
    return runners.start()
