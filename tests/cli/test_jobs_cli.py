"""`jobtail submit`, `jobtail jobs …` and `jobtail logs` against a live server with real
authentication: the CLI signs with the AK/SK of a credentials file, as after `jobtail serve`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support.cli import Cli, sqlite_only
from support.jobs import PY

from jobtail.cli.jobs import job_exit_code
from jobtail.core.types import TaskRef


@sqlite_only
def test_submit_follow_streams_worker_0_and_exits_with_the_failing_rank_code(cli: Cli) -> None:
    code = ("import os, sys, time\n"
            "rank = os.environ['RANK']\n"
            "print('hello from', rank, os.environ['GREETING'])\n"
            "sys.stdout.write('epoch 1: 50%\\r'); sys.stdout.flush(); time.sleep(0.3)\n"
            "print('epoch 1: 100%')\n"
            # rank 1 fails, late enough that rank 0 has printed all of the above even if it started later
            "(time.sleep(2), sys.exit(7)) if rank == '1' else time.sleep(60)\n")
    result = cli("submit", "--workers", "2", "--env", "GREETING=hi", "--follow", "--", PY, "-c", code, code=7)
    job_id = re.search(r"jobtail: job (\S+) submitted; following worker-0", result.stderr).group(1)  # type: ignore[union-attr]
    assert f"jobtail: job {job_id} Failed (exit code 7)" in result.stderr
    out = result.stdout
    assert re.match(r"\[ModelArts Service Log\]\[INFO\]\[.*\] worker-0 started \(RANK 0 of 2", out)
    assert "\nhello from 0 hi\nepoch 1: 50%\repoch 1: 100%\n" in out
    assert re.search(r"\] stopped because worker-1 failed; exit with 143\n$", out)
    stored = cli.live.store.read(cli.live.store.state(TaskRef(cli.project, job_id, "worker-0")), 0, 1 << 20)
    assert out.encode() == b"".join(stored)  # the whole log, each byte once


@sqlite_only
def test_submit_logs_list_and_show(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the job runs where `submit` was run
    (tmp_path / "data.txt").write_text("local data\n")
    job_id = cli("submit", "--name", "cat-it", "-w", "2", "--", "cat data.txt && printf 'no newline'").stdout.strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", job_id)
    job = cli.wait(job_id)
    assert job["status"]["phase"] == "Completed"
    assert job["algorithm"]["command"] == "cat data.txt && printf 'no newline'"  # one argument: a shell line
    assert job["algorithm"]["working_dir"] == str(tmp_path)

    log = cli("logs", job_id, "-t", "worker-1").stdout
    assert "\nlocal data\nno newline\n[ModelArts Service Log][INFO]" in log and log.endswith("exit with 0\n")
    assert cli("logs", job_id).stdout.startswith("[ModelArts Service Log][INFO]")

    table = cli("jobs", "list").stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "PHASE", "TASKS", "CREATED", "DURATION"]
    assert table[1].split()[:4] == [job_id, "cat-it", "Completed", "2"]
    listed = cli.json("jobs", "list", "--phase", "Completed")
    assert [j["metadata"]["id"] for j in listed["items"]] == [job_id]
    assert cli.json("jobs", "list", "--phase", "Running")["items"] == []

    shown = cli("jobs", "show", job_id).stdout
    assert f"{job_id}  cat-it  Completed" in shown
    assert "worker-1  exit code 0: Exited with code 0." in shown
    assert "Training job completed." in shown

    created = json.loads(cli("submit", "--json", "--", "true").stdout)
    assert created["status"]["phase"] == "Creating" and created["metadata"]["name"].startswith("job-")


@sqlite_only
def test_stop_and_delete(cli: Cli) -> None:
    job_id = cli("submit", "--", "sleep 60").stdout.strip()
    cli.wait(job_id, ("Running",))
    assert cli("jobs", "stop", "--wait", job_id).stdout == f"{job_id} Terminated\n"
    assert cli.json("jobs", "show", job_id)["status"]["task_statuses"][0]["exit_code"] == 143
    again = cli("jobs", "stop", job_id, code=1)
    assert again.stderr == "Error: ModelArts.2796 The job cannot be terminated.\n"
    assert cli("jobs", "delete", job_id).stdout == f"{job_id} deleted\n"
    gone = cli("jobs", "show", job_id, code=1)
    assert gone.stderr == f"Error: ModelArts.2775 Training job (ID: {job_id}) not found.\n"
    assert cli("logs", job_id, code=1).stderr == f"Error: ModelArts.2775 Training job (ID: {job_id}) not found.\n"


@sqlite_only
def test_connection_problems_are_one_line_errors(cli: Cli, tmp_path: Path) -> None:
    missing = cli("jobs", "list", "--credentials", str(tmp_path / "nope.json"), code=1)
    assert missing.stderr.startswith(f"Error: no credentials file at {tmp_path / 'nope.json'}")
    assert missing.stderr.count("\n") == 1
    down = cli("jobs", "list", "--url", "http://127.0.0.1:9", code=1)
    assert down.stderr.startswith("Error: cannot reach the jobtail server") and down.stderr.count("\n") == 1
    wrong_key = tmp_path / "wrong.json"
    wrong_key.write_text(json.dumps({**json.loads(cli.credentials.read_text()), "secret_key": "x" * 40}))
    denied = cli("jobs", "list", env={"JOBTAIL_CREDENTIALS": str(wrong_key)}, code=1)
    assert denied.stderr.startswith("Error: APIGW.0301 ")
    bad_env = cli("submit", "--env", "NOEQUALS", "--", "true", code=2)
    assert "'NOEQUALS' is not NAME=VALUE" in bad_env.stderr


@pytest.mark.parametrize(("phase", "statuses", "code"), [
    ("Completed", [{"exit_code": 0, "message": "Exited with code 0."}], 0),
    ("Failed", [{"exit_code": 143, "message": "Stopped because worker-1 failed; exit code 143 (SIGTERM)."},
                {"exit_code": 3, "message": "Exited with code 3."}], 3),
    ("Terminated", [{"exit_code": 137, "message": "Stopped by a terminate request; exit code 137 (SIGKILL)."}], 137),
    ("Abnormal", [{"exit_code": -1, "message": "The jobtail server running this job stopped (…)."}], 1),
    ("Terminated", [], 1),
])
def test_a_job_exit_code_is_that_of_the_task_that_failed(phase: str, statuses: list[dict[str, object]],
                                                        code: int) -> None:
    assert job_exit_code({"status": {"phase": phase, "task_statuses": statuses}}) == code


@sqlite_only
def test_a_restarted_job_shows_its_attempts_and_logs_prints_each_attempt(cli: Cli) -> None:
    command = 'echo "attempt $JOBTAIL_ATTEMPT of rank $RANK"; [ "$JOBTAIL_ATTEMPT" = 2 ] || kill -9 $$'
    job_id = cli("submit", "-w", "2", "-a", "fault-tolerance/job-retry-num=1", "-a", "team=x", "--", command).stdout.strip()
    job = cli.wait(job_id)
    assert job["status"]["phase"] == "Completed" and job["metadata"]["annotations"]["team"] == "x"
    shown = cli("jobs", "show", job_id).stdout
    assert re.search(r"attempt 1  .* - .*  Killed by signal 9 \(SIGKILL\) \(worker-\d failed first\), restarted\n", shown)
    assert re.search(r"attempt 2  .* - .*  Completed\n", shown)
    first = cli("logs", job_id, "-t", "worker-1", "--attempt", "1").stdout
    second = cli("logs", job_id, "-t", "worker-1", "--attempt", "2").stdout
    assert "\nattempt 1 of rank 1\n" in first and "attempt 2" not in first.replace("attempt 2 of 2", "")
    assert first.startswith("[ModelArts Service Log]") and "attempt 1 ended: worker-" in first
    assert second.startswith("[ModelArts Service Log]") and "\nattempt 2 of rank 1\n" in second
    assert "attempt 1 of rank" not in second
    whole = b"".join(cli.live.store.read(cli.live.store.state(TaskRef(cli.project, job_id, "worker-1")), 0, 1 << 20))
    assert (first + second).encode() == whole  # the attempts split the log, each byte once
    refused = cli("logs", job_id, "--attempt", "3", code=1).stderr
    assert "there is no attempt 3" in refused
