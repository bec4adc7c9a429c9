"""The `jobtail` CLI driven against a live server with real authentication."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from support.live import LiveServer

from jobtail.cli import main

sqlite_only = pytest.mark.parametrize("meta_url", ["sqlite"], indirect=True)


class Cli:
    def __init__(self, live: LiveServer, credentials: Path, project: str) -> None:
        self.live = live
        self.credentials = credentials
        self.project = project

    def __call__(self, *args: str, code: int = 0, env: dict[str, str] | None = None) -> Result:
        result = CliRunner(env={"JOBTAIL_URL": None, "JOBTAIL_CREDENTIALS": str(self.credentials), **(env or {})}
                           ).invoke(main, list(args))
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)

    def wait(self, job_id: str, phases: tuple[str, ...] = ("Completed", "Failed", "Terminated", "Abnormal")) -> Any:
        deadline = time.monotonic() + 20
        while (job := self.json("jobs", "show", job_id))["status"]["phase"] not in phases:
            assert time.monotonic() < deadline, job["status"]["phase"]
            time.sleep(0.05)
        return job
