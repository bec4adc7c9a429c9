"""What a task sees: its environment, its working directory, and what happens when it cannot start."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support.jobs import PY, preview, submit, wait_phase
from support.live import LiveServer

from jobtail.core.types import JobRecord
from jobtail.runner.environment import task_environment

sqlite_only = pytest.mark.parametrize("meta_url", ["sqlite"], indirect=True)

DUMP = (f"{PY} -c 'import json, os; print(\"ENV=\" + json.dumps(dict(os.environ)))'"
        " && pwd | sed 's/^/PWD=/'")


def dumped(log: str) -> tuple[dict[str, str], str]:
    env = json.loads(re.search(r"^ENV=(.*)$", log, re.M).group(1))  # type: ignore[union-attr]
    return env, re.search(r"^PWD=(.*)$", log, re.M).group(1)  # type: ignore[union-attr]


@sqlite_only
def test_tasks_get_the_distributed_and_modelarts_variables(runner: LiveServer, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBTAIL_TEST_SECRET", "a database password")  # the server's own settings stay private
    monkeypatch.setenv("SERVER_SIDE", "inherited")
    workdir = tmp_path / "code"
    workdir.mkdir()
    with runner.client() as http:
        job_id = submit(http, "env", DUMP, workers=2, working_dir=str(workdir),
                        environments={"LR": "0.1", "RANK": "99", "PYTHONUNBUFFERED": ""})
        assert wait_phase(http, job_id)["status"]["phase"] == "Completed"
        (env0, pwd0), (env1, pwd1) = (dumped(preview(http, job_id, t)) for t in ("worker-0", "worker-1"))
    assert pwd0 == pwd1 == str(workdir)
    for rank, env in ((0, env0), (1, env1)):
        assert {k: env[k] for k in ("RANK", "LOCAL_RANK", "VC_TASK_INDEX", "JOBTAIL_TASK_ID")} == {
            "RANK": str(rank), "LOCAL_RANK": str(rank), "VC_TASK_INDEX": str(rank), "JOBTAIL_TASK_ID": f"worker-{rank}"}
        assert {k: env[k] for k in ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "MA_NUM_HOSTS", "VC_WORKER_NUM")} == {
            "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MA_NUM_HOSTS": "2", "VC_WORKER_NUM": "2"}
        assert env["MASTER_ADDR"] == env["MA_CURRENT_HOST_IP"] == env["MA_CURRENT_IP"] == "127.0.0.1"
        assert env["VC_WORKER_HOSTS"] == "127.0.0.1,127.0.0.1"
        assert env["JOBTAIL_JOB_ID"] == job_id
        assert env["LR"] == "0.1" and env["SERVER_SIDE"] == "inherited"
        assert env["PYTHONUNBUFFERED"] == ""  # the job's choice wins over jobtail's default
        assert "JOBTAIL_TEST_SECRET" not in env
    assert env0["MASTER_PORT"] == env1["MASTER_PORT"] and 0 < int(env0["MASTER_PORT"]) < 65536


def test_environment_layers_without_a_server() -> None:
    job = JobRecord(id="j1", project_id="p1", name="n", tasks=("worker-0", "worker-1", "worker-2"), created_at=0,
                    document={"algorithm": {"environments": {"MASTER_ADDR": "elsewhere", "X": "y"}}})
    env = task_environment(job, 2, 29500, base={"PATH": "/bin", "JOBTAIL_DATABASE_URL": "postgresql://u:pw@h/db"})
    assert env["PATH"] == "/bin" and env["X"] == "y" and env["PYTHONUNBUFFERED"] == "1"
    assert env["MASTER_ADDR"] == "127.0.0.1"  # jobtail owns the rendezvous variables
    assert (env["RANK"], env["WORLD_SIZE"], env["MASTER_PORT"]) == ("2", "3", "29500")
    assert env["JOBTAIL_ATTEMPT"] == "1"
    owned = ("JOBTAIL_JOB_ID", "JOBTAIL_TASK_ID", "JOBTAIL_PROJECT_ID", "JOBTAIL_ATTEMPT")
    assert not any(k.startswith("JOBTAIL_") and k not in owned for k in env)


def test_a_sandboxed_task_gets_none_of_the_credentials_the_server_s_backends_read() -> None:
    job = JobRecord(id="j1", project_id="p1", name="n", tasks=("worker-0",), created_at=0,
                    document={"algorithm": {"environments": {"AWS_PROFILE": "the-job-s-own"}}})
    server = {"PATH": "/bin", "PGPASSWORD": "db", "PGPASSFILE": "/root/.pgpass", "AWS_SECRET_ACCESS_KEY": "s3",
              "JOBTAIL_DATABASE_URL": "postgresql://u:pw@h/db", "HF_HOME": "/cache"}
    sandboxed = task_environment(job, 0, 29500, base=server, sandboxed=True)
    assert not {"PGPASSWORD", "PGPASSFILE", "AWS_SECRET_ACCESS_KEY", "JOBTAIL_DATABASE_URL"} & set(sandboxed)
    assert sandboxed["HF_HOME"] == "/cache" and sandboxed["AWS_PROFILE"] == "the-job-s-own"  # its own choice stays
    assert task_environment(job, 0, 29500, base=server)["PGPASSWORD"] == "db"  # unsandboxed: as before


@sqlite_only
def test_a_task_that_cannot_start_fails_the_job(runner: LiveServer, tmp_path: Path) -> None:
    with runner.client() as http:
        job_id = submit(http, "nowhere", "echo hi", working_dir=str(tmp_path / "missing"))
        job = wait_phase(http, job_id)
        assert job["status"]["phase"] == "Failed"
        [status] = job["status"]["task_statuses"]
        assert status["exit_code"] == 127
        assert status["message"].startswith("Could not start: [Errno 2] No such file or directory")
        assert "cannot start worker-0: [Errno 2]" in preview(http, job_id)


@sqlite_only
def test_a_missing_program_is_exit_code_127(runner: LiveServer) -> None:
    with runner.client() as http:
        job_id = submit(http, "no-program", "no-such-program-here --flag")
        job = wait_phase(http, job_id)
        assert (job["status"]["phase"], job["status"]["task_statuses"][0]["exit_code"]) == ("Failed", 127)
        assert "no-such-program-here: not found" in preview(http, job_id)


def test_no_task_is_pointed_at_the_server_s_metrics_files() -> None:
    job = JobRecord(id="j1", project_id="p1", name="n", tasks=("worker-0",), created_at=0, document={})
    server = {"PATH": "/bin", "PROMETHEUS_MULTIPROC_DIR": "/var/lib/jobtail/metrics"}
    for sandboxed in (False, True):  # prometheus_client in a job would write into (or fail on) the server's files
        assert "PROMETHEUS_MULTIPROC_DIR" not in task_environment(job, 0, 29500, base=server, sandboxed=sandboxed)
