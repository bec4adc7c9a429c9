"""The official Huawei SDK runs jobs on this machine through jobtail, and the example script's logs."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkmodelarts.v1 import (
    CreateTrainingJobRequest,
    DeleteTrainingJobRequest,
    Filter,
    Job,
    JobActionType,
    JobAlgorithm,
    JobMetadata,
    JobSearches,
    ListTrainingJobsRequest,
    ModelArtsClient,
    ShowTrainingJobDetailsRequest,
    ShowTrainingJobLogsPreviewRequest,
    Spec,
    SpecResource,
    StopTrainingJobRequest,
)
from support.jobs import PY, all_gone, preview, submit, task_pids, wait_phase
from support.live import LiveServer
from support.sdk import sdk_client

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train.py"


def job(name: str, command: str, nodes: int = 1) -> Job:
    return Job(kind="job", metadata=JobMetadata(name=name),
               algorithm=JobAlgorithm(command=command, environments={"GREETING": "hello"}),
               spec=Spec(resource=SpecResource(flavor_id="modelarts.vm.cpu.8u", node_count=nodes)))


@pytest.fixture
def client(runner: LiveServer) -> Iterator[ModelArtsClient]:
    sdk = sdk_client(runner.url)
    yield sdk
    sdk.get_http_client().close()  # its pooled connections, before they are garbage


def test_sdk_creates_shows_lists_terminates_and_deletes_local_jobs(runner: LiveServer, client: ModelArtsClient) -> None:
    quick = client.create_training_job(CreateTrainingJobRequest(body=job("quick", "echo $GREETING from $RANK", 2)))
    assert quick.status_code == 201 and quick.status.phase == "Creating"
    slow = client.create_training_job(CreateTrainingJobRequest(
        body=job("slow", f"{PY} -c 'import os, time; print(\"pgid=%d\" % os.getpgid(0), flush=True); time.sleep(60)'")))

    def details(job_id: str, phases: tuple[str, ...]) -> object:
        deadline = time.monotonic() + 20
        while True:
            shown = client.show_training_job_details(ShowTrainingJobDetailsRequest(training_job_id=job_id))
            if shown.status.phase in phases:
                return shown
            assert time.monotonic() < deadline, shown.status.phase
            time.sleep(0.05)

    done = details(quick.metadata.id, ("Completed", "Failed"))
    assert done.status.phase == "Completed"  # type: ignore[attr-defined]
    assert [(s.task, s.exit_code) for s in done.status.task_statuses] == [("worker-0", 0), ("worker-1", 0)]  # type: ignore[attr-defined]
    log = client.show_training_job_logs_preview(
        ShowTrainingJobLogsPreviewRequest(training_job_id=quick.metadata.id, task_id="worker-1"))
    assert "\nhello from 1\n" in log.content and log.current_size == log.full_size

    details(slow.metadata.id, ("Running",))
    with runner.client() as http:
        wait_log(http, slow.metadata.id)  # type: ignore[arg-type]
        tree = task_pids(slow.metadata.id)  # type: ignore[arg-type]
    running = client.list_training_jobs(ListTrainingJobsRequest(body=JobSearches(
        filters=[Filter(key="phase", operator="in", value=["Running"])])))
    assert [j.metadata.name for j in running.items] == ["slow"]
    assert client.list_training_jobs(ListTrainingJobsRequest(body=JobSearches())).count == 2

    stopped = client.stop_training_job(
        StopTrainingJobRequest(training_job_id=slow.metadata.id, body=JobActionType(action_type="terminate")))
    assert (stopped.status_code, stopped.status.phase) == (202, "Terminating")
    assert details(slow.metadata.id, ("Terminated",)).status.task_statuses[0].exit_code == 143  # type: ignore[attr-defined]
    assert all_gone(tree)

    for job_id in (quick.metadata.id, slow.metadata.id):
        assert client.delete_training_job(DeleteTrainingJobRequest(training_job_id=job_id)).status_code == 202
        with pytest.raises(ClientRequestException) as gone:
            client.show_training_job_details(ShowTrainingJobDetailsRequest(training_job_id=job_id))
        assert gone.value.error_code == "ModelArts.2775"


def wait_log(http: object, job_id: str) -> str:
    deadline = time.monotonic() + 20
    while "\npgid=" not in (content := preview(http, job_id)):  # type: ignore[arg-type]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return content


@pytest.mark.parametrize("meta_url", ["sqlite"], indirect=True)
def test_the_example_script_looks_like_real_training(runner: LiveServer) -> None:
    with runner.client() as http:
        # Rank 0 would run for ~6 s more: stopping it must not race with it finishing on a busy machine.
        job_id = submit(http, "example", f"{PY} {EXAMPLE} --epochs 30 --steps 10 --fail-at 2 --fail-rank 1", workers=2)
        job = wait_phase(http, job_id)
        rank0, rank1 = preview(http, job_id, "worker-0"), preview(http, job_id, "worker-1")
    assert job["status"]["phase"] == "Failed"
    worker0, worker1 = job["status"]["task_statuses"]
    assert (worker1["exit_code"], worker1["message"]) == (1, "Exited with code 1.")
    assert worker0["message"].startswith("Stopped because worker-1 failed")
    assert "[rank 0/2] toy-resnet training, master 127.0.0.1:" in rank0
    assert "[rank 0] 开始训练：数据集 toy-imagenet" in rank0
    assert "UserWarning: torch.cuda is not available" in rank0  # a warning, on stderr
    assert re.search(r"\rEpoch 1/30:  \d+%\|█+ *\| \d+/10 \[", rank0)  # a progress bar redrawn with \r
    assert "acc=\x1b[36m" in rank0 and "saved checkpoint ckpt/epoch-1.pt" in rank0  # colours; rank 0 only
    assert "saved checkpoint" not in rank1 and "data shard: samples 25000..49999" in rank1
    assert "Traceback (most recent call last):" in rank1
    assert "DivergenceError: loss is inf at epoch 2, step 5 (rank 1)\n" in rank1
