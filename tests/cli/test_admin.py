"""The admin CLI works on the same store that `serve` opens."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from jobtail.cli import main
from jobtail.core.types import TaskRef
from jobtail.settings import Settings
from jobtail.wiring import open_store


def test_create_job_append_and_seal(tmp_path: Path) -> None:
    runner = CliRunner()
    created = runner.invoke(main, ["admin", "job", "create", "--project", "p1", "--name", "demo", "--workers", "2",
                                   "--json", "--data-dir", str(tmp_path)])
    assert created.exit_code == 0, created.output
    job = json.loads(created.output)
    assert job["tasks"] == ["worker-0", "worker-1"]

    store = open_store(Settings(data_dir=tmp_path))
    try:
        store.append(TaskRef("p1", job["id"], "worker-1"), b"hello\n")
    finally:
        store.close()
    sealed = runner.invoke(main, ["admin", "seal", "--project", "p1", job["id"], "--data-dir", str(tmp_path)])
    assert sealed.exit_code == 0, sealed.output
    assert "worker-1: 1 segment(s) written" in sealed.output
    assert any((tmp_path / "blobs" / "jobs" / job["id"] / "worker-1").iterdir())

    duplicate = runner.invoke(main, ["admin", "job", "create", "--project", "p1", "--name", "demo",
                                     "--data-dir", str(tmp_path)])
    assert duplicate.exit_code == 1
    assert "Duplicate training job (name demo)" in duplicate.output


def test_errors_are_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["admin", "seal", "--project", "p1", "no-such-job", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: Training job (ID: no-such-job) not found."


def test_job_create_follows_the_api_s_rule_for_the_number_of_tasks(tmp_path: Path) -> None:
    """One rule for jobs, wherever they are created: at most 256 tasks, as the API allows."""
    runner = CliRunner()
    args = ["admin", "job", "create", "--project", "p1", "--data-dir", str(tmp_path)]
    too_many = runner.invoke(main, [*args, "--name", "huge", "--workers", "257"])
    assert too_many.exit_code == 1
    assert too_many.output.strip() == "Error: Invalid job node_count. It must be 1-256."
    most = runner.invoke(main, [*args, "--name", "largest", "--workers", "256", "--json"])
    assert most.exit_code == 0, most.output
    assert len(json.loads(most.output)["tasks"]) == 256
