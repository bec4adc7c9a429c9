"""A full disk as clients see it, for real: SQLite and the segment directory on a small tmpfs.

Appends and creates answer 507 `Jobtail.0507` ("no space left on the log store") instead of an
internal error, nothing acknowledged is lost, reads keep working, and writes succeed again as
soon as space is freed. The maintenance thread's side is in test_maintenance.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ServerResponseException
from huaweicloudsdkmodelarts.v1 import (
    CreateTrainingJobRequest,
    Job,
    JobMetadata,
    ShowTrainingJobLogsPreviewRequest,
    Spec,
    SpecResource,
)
from support.filesystems import fill, tmpfs
from support.live import serving_sqlite
from support.sdk import PROJECT, sdk_client

from jobtail.core.types import TaskRef

APPEND = 64 * 1024


def _job(name: str) -> CreateTrainingJobRequest:
    return CreateTrainingJobRequest(body=Job(kind="job", metadata=JobMetadata(name=name),
                                             spec=Spec(resource=SpecResource(flavor_id="cpu", node_count=1))))


def test_a_full_disk_answers_507_keeps_what_was_stored_and_recovers_when_space_is_freed(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "16m") as disk, serving_sqlite(tmp_path, disk / "jobtail.db", disk / "blobs",
                                                          seal_idle_seconds=3600.0) as live:
        sdk = sdk_client(live.url)
        job_id = sdk.create_training_job(_job("before")).metadata.id
        logs = f"/v2/{PROJECT}/training-jobs/{job_id}/tasks/worker-0/logs"
        with live.client() as http:
            acknowledged = b"before the disk filled\n" * 4096
            assert http.post(logs, content=acknowledged).status_code == 200
            ballast = fill(disk)
            for _ in range(16 * 1024 * 1024 // APPEND):  # the disk runs out long before
                data = os.urandom(APPEND // 2).hex().encode()
                r = http.post(logs, content=data, params={"offset": len(acknowledged)})
                if r.status_code != 200:
                    break
                acknowledged += data
            else:
                pytest.fail("appends kept succeeding on a full disk")
            assert r.status_code == 507, r.text
            body = r.json()
            assert body["error_code"] == "Jobtail.0507"
            assert "no space left on the log store (head files)" in body["error_msg"]  # SQLite's file head
            assert body["error_solution"] and body["request_id"] == r.headers["x-request-id"]

            with pytest.raises(ServerResponseException) as refused:
                sdk.create_training_job(_job("while-full"))
            assert (refused.value.status_code, refused.value.error_code) == (507, "Jobtail.0507")
            assert "no space left on the log store" in refused.value.error_msg

            preview = sdk.show_training_job_logs_preview(
                ShowTrainingJobLogsPreviewRequest(training_job_id=job_id, task_id="worker-0"))
            assert preview.full_size == len(acknowledged), "reads keep working, nothing acknowledged is lost"
            assert http.get(logs + "/size").json()["full_size"] == len(acknowledged)

            ballast.unlink()
            r = http.post(logs, content=b"after\n", params={"offset": len(acknowledged)})
            assert (r.status_code, r.json()) == (200, {"full_size": len(acknowledged) + 6})
            assert sdk.create_training_job(_job("after")).status_code == 201
        stored = b"".join(live.store.read(live.store.state(TaskRef(PROJECT, job_id, "worker-0")), 0, 1 << 40))
        assert stored == acknowledged + b"after\n"
        sdk.get_http_client().close()
