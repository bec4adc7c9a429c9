"""Fixtures for the CLI tests: a live server with real authentication and a credentials file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.cli import Cli
from support.engine import Engine, open_identity
from support.runners import Runners

from jobtail.auth.authenticator import Authenticator
from jobtail.auth.bootstrap import bootstrap
from jobtail.auth.secrets import load_master_key
from jobtail.http.guard import IdentityGuard


@pytest.fixture
def cli(engine_factory: Callable[..., Engine], meta_url: str, tmp_path: Path) -> Iterator[Cli]:
    """A live server running jobs locally behind the real IdentityGuard, and a credentials file
    for its bootstrapped admin, as `jobtail serve` writes on first start."""
    runners = Runners(tmp_path, engine_factory)
    identity = open_identity(meta_url)
    master_key = load_master_key(runners.data_dir / "master.key")
    authenticator = Authenticator(identity, master_key)
    live = runners.start(guard=IdentityGuard(authenticator), authenticator=authenticator)
    (tmp_path / "home").mkdir()
    done = bootstrap(identity, master_key, tmp_path / "home", live.url)
    assert done is not None
    yield Cli(live, done.path, done.project_id)
    runners.stop_all()
    identity.close()
