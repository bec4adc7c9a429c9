"""The training job API with the official Huawei SDK as the client (jobs that run elsewhere)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkmodelarts.v1 import (
    CreateTrainingJobRequest,
    DeleteTrainingJobRequest,
    Filter,
    Job,
    JobActionType,
    JobAlgorithm,
    JobEngine,
    JobMetadata,
    JobSearches,
    ListTrainingJobEventsRequest,
    ListTrainingJobsRequest,
    ListTrainingJobTasksRequest,
    ShowTrainingJobDetailsRequest,
    ShowTrainingJobLogsPreviewRequest,
    Spec,
    SpecResource,
    StopTrainingJobRequest,
)
from support.live import LiveServer
from support.sdk import PROJECT, sdk_client

from jobtail.core.types import TaskRef


@pytest.fixture
def remote(live_factory: Callable[..., LiveServer]) -> LiveServer:
    return live_factory(executor="none")


def new_job(name: str, nodes: int = 1) -> Job:
    return Job(
        kind="job",
        metadata=JobMetadata(name=name, description="from the SDK"),
        algorithm=JobAlgorithm(command="python train.py", engine=JobEngine(image_url="swr/x:1"),
                               environments={"LR": "0.1"}),
        spec=Spec(resource=SpecResource(flavor_id="modelarts.vm.cpu.8u", node_count=nodes)),
    )


def test_sdk_job_lifecycle(remote: LiveServer) -> None:
    client = sdk_client(remote.url)
    created = client.create_training_job(CreateTrainingJobRequest(body=new_job("resnet", nodes=2)))
    assert created.status_code == 201
    job_id = created.metadata.id
    assert created.metadata.name == "resnet"
    assert created.status.phase == "Running"
    assert created.status.tasks == ["worker-0", "worker-1"]
    assert created.algorithm.environments == [{"LR": "0.1"}]
    assert created.spec.resource.node_count == 2

    shown = client.show_training_job_details(ShowTrainingJobDetailsRequest(training_job_id=job_id))
    assert (shown.metadata.id, shown.metadata.description, shown.status.phase) == (job_id, "from the SDK", "Running")
    assert shown.metadata.create_time == created.metadata.create_time > 0

    tasks = client.list_training_job_tasks(ListTrainingJobTasksRequest(training_job_id=job_id))
    assert [t.task for t in tasks.body] == ["worker-0", "worker-1"]

    remote.store.append(TaskRef(PROJECT, job_id, "worker-1"), b"shipped from elsewhere\n")
    preview = client.show_training_job_logs_preview(
        ShowTrainingJobLogsPreviewRequest(training_job_id=job_id, task_id="worker-1"))
    assert preview.content == "shipped from elsewhere\n"

    stopped = client.stop_training_job(
        StopTrainingJobRequest(training_job_id=job_id, body=JobActionType(action_type="terminate")))
    assert (stopped.status_code, stopped.status.phase) == (202, "Terminated")
    with pytest.raises(ClientRequestException) as again:
        client.stop_training_job(
            StopTrainingJobRequest(training_job_id=job_id, body=JobActionType(action_type="terminate")))
    assert (again.value.status_code, again.value.error_code) == (409, "ModelArts.2796")

    events = client.list_training_job_events(ListTrainingJobEventsRequest(training_job_id=job_id))
    assert [e.message for e in events.events] == [
        "Training job is created.", "Training job is running.", "Training job is terminated."]

    deleted = client.delete_training_job(DeleteTrainingJobRequest(training_job_id=job_id))
    assert deleted.status_code == 202
    for call in (
        lambda: client.show_training_job_details(ShowTrainingJobDetailsRequest(training_job_id=job_id)),
        lambda: client.show_training_job_logs_preview(
            ShowTrainingJobLogsPreviewRequest(training_job_id=job_id, task_id="worker-1")),
    ):
        with pytest.raises(ClientRequestException) as gone:
            call()
        assert (gone.value.status_code, gone.value.error_code) == (400, "ModelArts.2775")


def test_sdk_searches_jobs(remote: LiveServer) -> None:
    client = sdk_client(remote.url)
    for name in ("alpha-1", "alpha-2", "beta-1"):
        client.create_training_job(CreateTrainingJobRequest(body=new_job(name)))
    stopped = client.list_training_jobs(ListTrainingJobsRequest(body=JobSearches(limit=50))).items[0]
    client.stop_training_job(StopTrainingJobRequest(training_job_id=stopped.metadata.id,
                                                    body=JobActionType(action_type="terminate")))

    everything = client.list_training_jobs(ListTrainingJobsRequest(body=JobSearches(limit=2, offset=0)))
    assert (everything.total, everything.count, len(everything.items)) == (3, 3, 2)
    assert [j.metadata.name for j in everything.items] == ["beta-1", "alpha-2"]  # newest first
    second_page = client.list_training_jobs(ListTrainingJobsRequest(body=JobSearches(limit=2, offset=1)))
    assert [j.metadata.name for j in second_page.items] == ["alpha-1"]

    by_name = client.list_training_jobs(ListTrainingJobsRequest(body=JobSearches(
        order="asc", sort_by="name", filters=[Filter(key="name", operator="like", value=["alpha"])])))
    assert [j.metadata.name for j in by_name.items] == ["alpha-1", "alpha-2"]
    running = client.list_training_jobs(ListTrainingJobsRequest(body=JobSearches(
        filters=[Filter(key="phase", operator="in", value=["Running"])])))
    assert running.count == 2 and stopped.metadata.name not in {j.metadata.name for j in running.items}

    with pytest.raises(ClientRequestException) as bad:
        client.list_training_jobs(ListTrainingJobsRequest(body=JobSearches(
            filters=[Filter(key="owner", operator="in", value=["x"])])))
    assert (bad.value.status_code, bad.value.error_code) == (400, "ModelArts.2807")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "ModelArts.2787"),
        (b"[1, 2]", 400, "ModelArts.2787"),
        (b'{"kind": "job"}', 400, "ModelArts.2788"),
        (b'{"kind": "job", "metadata": {"name": "bad name!"}}', 400, "ModelArts.2788"),
        (b'{"kind": "rocket", "metadata": {"name": "ok"}}', 400, "ModelArts.2788"),
        (b'{"metadata": {"name": "ok"}, "spec": {"resource": {"node_count": 0}}}', 400, "ModelArts.2788"),
        (b'{"metadata": {"name": "ok"}, "spec": {"resource": {"node_count": "2"}}}', 400, "ModelArts.2788"),
        (b'{"metadata": {"name": "ok"}, "algorithm": {"environments": {"A": 1}}}', 400, "ModelArts.2788"),
        (b'{"metadata": {"name": "\\u0000"}}', 400, "ModelArts.2788"),
        (b'\xff\xfe', 400, "ModelArts.2787"),
    ],
)
def test_create_rejects_bad_bodies(remote: LiveServer, body: bytes, status: int, code: str) -> None:
    with remote.client() as http:
        r = http.post(f"/v2/{PROJECT}/training-jobs", content=body, headers={"content-type": "application/json"})
        assert (r.status_code, r.json()["error_code"]) == (status, code), r.text
        listed = http.post(f"/v2/{PROJECT}/training-job-searches", json={})
    assert listed.json()["total"] == 0


def test_unknown_fields_are_kept_and_names_are_unique(remote: LiveServer) -> None:
    body = {"kind": "job", "metadata": {"name": "keep", "annotations": {"a": "b"}}, "x_custom": {"n": 1},
            "spec": {"resource": {"node_count": 1, "pool_id": "p1"}}}
    with remote.client() as http:
        created = http.post(f"/v2/{PROJECT}/training-jobs", json=body).json()
        assert created["x_custom"] == {"n": 1}
        assert created["metadata"]["annotations"] == {"a": "b"}
        assert created["spec"]["resource"]["pool_id"] == "p1"
        shown = http.get(f"/v2/{PROJECT}/training-jobs/{created['metadata']['id']}").json()
        assert shown["x_custom"] == {"n": 1}
        dup = http.post(f"/v2/{PROJECT}/training-jobs", json=body)
        assert (dup.status_code, dup.json()["error_code"]) == (400, "ModelArts.2751")
        other = http.post("/v2/other-project/training-jobs", json=body)
        assert other.status_code == 201
        unknown = http.post(f"/v2/{PROJECT}/training-jobs/{created['metadata']['id']}/actions",
                            json={"action_type": "restart"})
        assert (unknown.status_code, unknown.json()["error_code"]) == (400, "ModelArts.2812")
        cross = http.get(f"/v2/other-project/training-jobs/{created['metadata']['id']}")
        assert (cross.status_code, cross.json()["error_code"]) == (400, "ModelArts.2775")


@pytest.mark.parametrize("meta_url", ["sqlite"], indirect=True)  # checked before anything is stored
@pytest.mark.parametrize(("algorithm", "param", "reason"), [
    ({"command": "echo a\0b"}, "algorithm.command", "NUL"),
    ({"command": "true", "environments": {"A": "x\0y"}}, "algorithm.environments", "NUL"),
    ({"command": "true", "environments": {"A\0B": "x"}}, "algorithm.environments", "NUL"),
    ({"command": "true", "environments": {"A=B": "x"}}, "algorithm.environments", "'='"),
    ({"command": "true", "environments": {"": "x"}}, "algorithm.environments", "empty"),
    ({"command": "true", "working_dir": "/tmp\0/x"}, "algorithm.working_dir", "NUL"),
    ({"command": "true", "working_dir": 7}, "algorithm.working_dir", "string"),
    ({"command": "x" * 131_072}, "algorithm.command", "131071"),
    ({"command": "true", "environments": {"BIG": "x" * 131_068}}, "algorithm.environments", "131071"),
])
def test_create_refuses_what_no_process_could_be_started_with(
    live_factory: Callable[..., LiveServer], algorithm: dict[str, object], param: str, reason: str
) -> None:
    """A NUL, an `=` in a variable name, an empty name or a string longer than the kernel takes
    (execve: 128 KiB) would only fail later, when the task starts; it is refused at create
    (whichever executor: the same checks run for jobs that run elsewhere)."""
    live = live_factory(executor="local")
    sdk = sdk_client(live.url)
    body = Job(kind="job", metadata=JobMetadata(name="refused"), algorithm=JobAlgorithm(**algorithm),
               spec=Spec(resource=SpecResource(flavor_id="modelarts.vm.cpu.8u", node_count=1)))
    with pytest.raises(ClientRequestException) as refused:
        sdk.create_training_job(CreateTrainingJobRequest(body=body))
    assert (refused.value.status_code, refused.value.error_code) == (400, "ModelArts.2788")
    assert refused.value.error_msg.startswith(f"Invalid parameter({param}).")
    assert reason in refused.value.error_msg
    with live.client() as http:
        assert http.post(f"/v2/{PROJECT}/training-job-searches", json={}).json()["total"] == 0
    sdk.get_http_client().close()
