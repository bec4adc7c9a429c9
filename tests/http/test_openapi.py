"""Schemathesis against `/openapi.json` of a real `jobtail serve`: no 5xx, every response as documented.

The server has a project with a terminated two-task job whose worker-0 has a log (so streams end
and reads find bytes), a second job for DELETE to take, and a token of a user who is admin there.
`st run` generates requests from the document (bounded: `MAX_EXAMPLES` per operation, in the
examples, coverage and fuzzing phases), half of them on those real ids (tests/support/
schemathesis_hooks.py), and fails on a 5xx, a status, content type, header or body that the
document does not allow, a 405 without `Allow`, or a secured operation that answers without
credentials. The hooks record every call, so the test also shows the run reached real logs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from support.serve import ServeProcess, clean_env, jobtail

from jobtail.core import ids
from jobtail.core.errors import InvalidId
from jobtail.http.app import operations
from jobtail.http.openapi import openapi_document

MAX_EXAMPLES = 60
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance", "response_headers_conformance",
          "response_schema_conformance", "missing_required_header", "unsupported_method", "allow_header_conformance",
          "ignored_auth")
PASSWORD = "schemathesis-password"
DOCUMENT = openapi_document(operations())
TASK_LOGS = "/v2/{project_id}/training-jobs/{training_job_id}/tasks/{task_id}/logs"


def served_with_a_log(server: ServeProcess, tmp_path: Path) -> dict[str, Any]:
    """Users, jobs and a log on `server`; what the hooks need to know."""
    data_dir = ["--data-dir", str(server.data_dir)]
    project = server.project()
    subprocess.run([sys.executable, "-m", "jobtail", "admin", "user", "create", "fuzzer", "--password-stdin", *data_dir],
                   input=PASSWORD, text=True, env=clean_env(), check=True, capture_output=True)
    jobtail("admin", "user", "grant", "fuzzer", "--project", project, "--role", "admin", *data_dir)
    login = {"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "fuzzer", "password": PASSWORD}}},
                      "scope": {"project": {"id": project}}}}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        token = http.post("/v3/auth/tokens", json=login).headers["x-subject-token"]
        http.headers["X-Auth-Token"] = token

        def create(name: str) -> str:
            body = {"kind": "job", "metadata": {"name": name}, "algorithm": {"command": "python train.py"},
                    "spec": {"resource": {"node_count": 2}}}
            r = http.post(f"/v2/{project}/training-jobs", json=body)
            assert r.status_code == 201, r.text
            return str(r.json()["metadata"]["id"])

        job, doomed = create("kept"), create("doomed")
        log = "".join(f"step {i} loss {1 / (i + 1):.4f}\n" for i in range(200)).encode()
        r = http.post(f"/v2/{project}/training-jobs/{job}/tasks/worker-0/logs?offset=0", content=log,
                      headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 200, r.text
        r = http.post(f"/v2/{project}/training-jobs/{job}/actions", json={"action_type": "terminate"})
        assert r.status_code == 202, r.text
        # A token for the run's own sign-outs (DELETE /v3/auth/tokens), so they do not end the run's.
        spare = http.post("/v3/auth/tokens", json=login).headers["x-subject-token"]
        doc = http.get("/openapi.json").json()
    operations = [[method.upper(), path] for path, item in doc["paths"].items() for method in item]
    return {"token": token, "spare_token": spare, "ids": {"project_id": project, "training_job_id": job, "task_id": "worker-0"},
            "doomed_job_id": doomed, "calls": str(tmp_path / "calls.jsonl"), "operations": operations}


def test_schemathesis_finds_no_5xx_and_nothing_undocumented(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path / "data", "--rate-limit-per-second", "0")
    server.start()
    try:
        setup = served_with_a_log(server, tmp_path)
        (tmp_path / "setup.json").write_text(json.dumps(setup))
        env = {**clean_env(), "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
               "SCHEMATHESIS_JOBTAIL_SETUP": str(tmp_path / "setup.json"),
               "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "support"), os.environ.get("PYTHONPATH", "")])}
        # One worker: with several, CPython 3.11.7's AST constructor (which hypothesis uses to describe
        # strategies) fails with "recursion depth mismatch" across threads (gh-106905).
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "--no-color", "run", f"{server.url}/openapi.json",
             "--header", f"X-Auth-Token: {setup['token']}", "--checks", ",".join(CHECKS),
             "--phases", "examples,coverage,fuzzing", "--max-examples", str(MAX_EXAMPLES), "--workers", "1",
             "--request-timeout", "30", "--continue-on-failure"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
        )
        output = run.stdout + run.stderr
        assert run.returncode == 0, output[-20000:]
        server_log = server.log.read_text()
        assert "Traceback" not in server_log, server_log[-5000:]
    finally:
        server.stop()
    generated = re.search(r"(\d+) generated", output)
    assert generated is not None and int(generated[1]) >= 1000, output[-3000:]
    calls = [json.loads(line) for line in Path(setup["calls"]).read_text().splitlines()]
    operations = {(method, path) for method, path, _, _ in calls}
    documented = {(method, path) for method, path in setup["operations"]} - {("GET", "/openapi.json")}  # st skips it
    assert operations >= documented, documented - operations
    reached = Counter((method, path) for method, path, real, status in calls if real and 200 <= status < 300)
    logs = "/v2/{project_id}/training-jobs/{training_job_id}/tasks/{task_id}/logs"
    for method, path in [("GET", logs + "/preview"), ("GET", logs + "/size"),
                         ("GET", logs + "/stream"), ("GET", logs + "/url"),
                         ("GET", "/v2/{project_id}/training-jobs/{training_job_id}/logs/{task_id}"),
                         ("GET", "/v2/{project_id}/training-jobs/{training_job_id}"),
                         ("GET", "/v2/{project_id}/training-jobs/{training_job_id}/events")]:
        assert reached[method, path] > 0, f"no generated {method} {path} reached the real log: {reached}"


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(st.text(max_size=70), st.from_regex(r"[A-Za-z0-9_.-]{1,66}", fullmatch=True)))
def test_the_documented_id_patterns_are_the_ones_the_server_checks(value: str) -> None:
    parameters = {p["name"]: p["schema"]["pattern"] for p in DOCUMENT["paths"][TASK_LOGS + "/preview"]["get"]["parameters"]
                  if p["in"] == "path"}
    checks = {"project_id": ids.check_project_id, "training_job_id": ids.check_job_id, "task_id": ids.check_task_id}
    for name, check in checks.items():
        try:
            check(value)
            accepted = True
        except InvalidId:
            accepted = False
        assert accepted == (re.search(parameters[name], value) is not None and "\n" not in value), (name, value)


def test_the_document_says_what_every_answer_carries() -> None:
    for path, item in DOCUMENT["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                assert "X-Request-Id" in response["headers"], (method, path, status)
            if op.get("x-modelarts-action") or "requestBody" in op:
                assert op["responses"]["429"]["headers"]["Retry-After"]["required"] is True
    searches = DOCUMENT["paths"]["/v2/{project_id}/training-job-searches"]["post"]
    assert searches["requestBody"]["required"] is False  # no body: the first page of every job
    assert DOCUMENT["paths"]["/v1/logs"]["post"]["requestBody"]["content"]["application/x-protobuf"]["schema"] == {
        "type": "string", "format": "binary"}
