"""The app each `jobtail serve` worker process runs (uvicorn imports `app_from_env`)."""

from __future__ import annotations

from starlette.applications import Starlette

from jobtail.http.app import create_app
from jobtail.http.server import die_with_supervisor, tune_malloc
from jobtail.settings import Settings
from jobtail.wiring import open_services

FACTORY = "jobtail.cli.server:app_from_env"


def app_from_env() -> Starlette:
    """The app for a worker process: settings from `JOBTAIL_*` variables (set by `serve`)."""
    tune_malloc()
    die_with_supervisor()
    return create_app(Settings(), open_services)
