"""Schemathesis hooks for the run against a real jobtail (tests/http/test_openapi.py).

Loaded by `st run` through `SCHEMATHESIS_HOOKS`; `SCHEMATHESIS_JOBTAIL_SETUP` names a JSON file with
the ids of a project, a job with a log and a job to delete, and a file to record each call in.
Half the generated path parameters are replaced by those ids, so that requests reach existing
jobs and logs, not only the checks of malformed or unknown ids.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import strategies as st

_SETUP = json.loads(Path(os.environ["SCHEMATHESIS_JOBTAIL_SETUP"]).read_text())
IDS: dict[str, str] = _SETUP["ids"]

schemathesis.serializer.alias("application/x-protobuf", "application/octet-stream")  # OTLP: any bytes


@schemathesis.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    real = {name: IDS[name] for name in (path_parameters or {}) if name in IDS}
    if not real:
        return st.just(path_parameters)
    return st.sampled_from([path_parameters, {**(path_parameters or {}), **real}])


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.path == "/v1/logs":  # name the project, as an OTLP exporter would
        case.headers = {**(case.headers or {}), "X-Project-Id": IDS["project_id"]}
    if case.method.upper() == "DELETE" and case.path == "/v3/auth/tokens":  # sign out the spare token, not ours
        case.headers = {**(case.headers or {}), "X-Subject-Token": _SETUP["spare_token"]}
    job = (case.path_parameters or {}).get("training_job_id")
    if case.method.upper() == "DELETE" and job == IDS["training_job_id"]:  # any DELETE, also one a check sends
        case.path_parameters = {**case.path_parameters, "training_job_id": _SETUP["doomed_job_id"]}


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    real = IDS["training_job_id"] in case.formatted_path
    with open(_SETUP["calls"], "a", encoding="utf-8") as calls:
        calls.write(json.dumps([case.method.upper(), case.path, real, response.status_code]) + "\n")
