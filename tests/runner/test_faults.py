"""Fault tolerance on the local executor, with the official SDK as the client: restarts after a
failure that counts, running records per attempt, one log per task across attempts, and the
task that failed first named in the job's failure."""

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
    Job,
    JobActionType,
    JobAlgorithm,
    JobMetadata,
    LogExportPath,
    ModelArtsClient,
    ShowTrainingJobDetailsRequest,
    ShowTrainingJobLogsPreviewRequest,
    Spec,
    SpecResource,
    StopTrainingJobRequest,
)
from support.jobs import PY, events, task_pids, wait_for_text
from support.live import LiveServer
from support.runners import Runners
from support.sdk import sdk_client

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train.py"
PLATFORM = r"\[ModelArts Service Log\]\[\w+\]\[[\d/ :,]+\] "


def job(name: str, command: str, nodes: int = 1, **annotations: str) -> Job:
    return Job(kind="job", metadata=JobMetadata(name=name, annotations=annotations),
               algorithm=JobAlgorithm(command=command),
               spec=Spec(resource=SpecResource(flavor_id="modelarts.vm.cpu.8u", node_count=nodes)))


@pytest.fixture
def client(runner: LiveServer) -> Iterator[ModelArtsClient]:
    sdk = sdk_client(runner.url)
    yield sdk
    sdk.get_http_client().close()


def finished(client: ModelArtsClient, job_id: str, phases: tuple[str, ...] = ("Completed", "Failed", "Terminated"),
             timeout: float = 60.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        shown = client.show_training_job_details(ShowTrainingJobDetailsRequest(training_job_id=job_id))
        if shown.status.phase in phases:
            return shown
        assert time.monotonic() < deadline, shown.status.phase
        time.sleep(0.1)


def log_of(client: ModelArtsClient, job_id: str, task: str) -> str:
    return client.show_training_job_logs_preview(
        ShowTrainingJobLogsPreviewRequest(training_job_id=job_id, task_id=task)).content


def test_a_rank_killed_once_is_restarted_and_the_job_completes(runner: LiveServer, client: ModelArtsClient) -> None:
    created = client.create_training_job(CreateTrainingJobRequest(body=job(
        "crash-once", f"{PY} {EXAMPLE} --epochs 1 --steps 6 --sleep 0.01 --crash-once --fail-rank 1", 2,
        **{"fault-tolerance/job-retry-num": "2", "team/owner": "vision"})))
    assert created.metadata.annotations == {"fault-tolerance/job-retry-num": "2", "team/owner": "vision"}
    done = finished(client, created.metadata.id)
    status = done.status  # type: ignore[attr-defined]
    assert status.phase == "Completed"
    assert done.metadata.annotations["team/owner"] == "vision"  # type: ignore[attr-defined]
    first, second = status.running_records
    assert (first.start_type, second.start_type) == ("init_or_rescheduled", "restarted")
    assert first.end_related_task == "worker-1" and first.end_recover == "job_reschedule"
    assert first.end_reason == "Killed by signal 9 (SIGKILL)"
    assert (second.end_related_task, second.end_recover) == ("", "")
    assert 0 < first.start_at <= first.end_at <= second.start_at <= second.end_at < time.time() + 1
    assert second.start_at - first.end_at >= 0  # seconds, as the SDK documents: not milliseconds
    assert first.start_at < 10**11
    for task in ("worker-0", "worker-1"):
        log = log_of(client, created.metadata.id, task)
        starts = [m.start() for m in re.finditer(PLATFORM + task + r" started \(RANK \d of 2, MASTER_PORT (\d+), "
                                                 r"attempt (\d) of 3\)", log)]
        assert len(starts) == 2, log
        ended = log.index("attempt 1 ended: worker-1 was killed by signal 9 (SIGKILL); restarting in 1s")
        assert starts[0] < ended < starts[1]
        assert log.rstrip("\n").endswith("exit with 0")
    ports = re.findall(r"MASTER_PORT (\d+), attempt", log_of(client, created.metadata.id, "worker-0"))
    assert len(set(ports)) == 2  # chosen again for the new attempt
    assert "crashing on purpose" in log_of(client, created.metadata.id, "worker-1")
    with runner.client() as http:
        said = events(http, created.metadata.id)
    assert "Training job restarted (attempt 2 of 3) because worker-1 was killed by signal 9 (SIGKILL)." in said


def test_a_job_that_fails_every_time_ends_failed_after_its_retries(runner: LiveServer, client: ModelArtsClient) -> None:
    created = client.create_training_job(CreateTrainingJobRequest(body=job(
        "always", "echo attempt $JOBTAIL_ATTEMPT; kill -9 $$", 1, **{"fault-tolerance/job-retry-num": "2"})))
    began = time.monotonic()
    done = finished(client, created.metadata.id)
    status = done.status  # type: ignore[attr-defined]
    assert status.phase == "Failed"
    assert [r.start_type for r in status.running_records] == ["init_or_rescheduled", "restarted", "restarted"]
    assert [r.end_recover for r in status.running_records] == ["job_reschedule", "job_reschedule", ""]
    assert all(r.end_related_task == "worker-0" for r in status.running_records)
    assert time.monotonic() - began >= 1 + 2  # the backoff: 1 s, then 2 s
    log = log_of(client, created.metadata.id, "worker-0")
    assert re.findall(r"\nattempt (\d)\n", log) == ["1", "2", "3"]


def test_an_exit_of_the_users_code_restarts_only_unconditionally(runner: LiveServer, client: ModelArtsClient) -> None:
    plain = client.create_training_job(CreateTrainingJobRequest(body=job(
        "plain", "exit 3", 1, **{"fault-tolerance/job-retry-num": "3"})))
    always = client.create_training_job(CreateTrainingJobRequest(body=job(
        "unconditional", '[ "$JOBTAIL_ATTEMPT" = 2 ] || exit 3', 1,
        **{"fault-tolerance/job-retry-num": "3", "fault-tolerance/job-unconditional-retry": "true"})))
    shown = finished(client, plain.metadata.id).status  # type: ignore[attr-defined]
    assert shown.phase == "Failed" and len(shown.running_records) == 1
    assert shown.running_records[0].end_reason == "Exited with code 3"
    shown = finished(client, always.metadata.id).status  # type: ignore[attr-defined]
    assert shown.phase == "Completed" and len(shown.running_records) == 2


def test_terminate_wins_over_a_pending_restart(runner: LiveServer, client: ModelArtsClient) -> None:
    # After the 4th failure the backoff is 8 s: time enough, even on a busy machine, to terminate
    # while the job waits for its 5th attempt.
    created = client.create_training_job(CreateTrainingJobRequest(body=job(
        "terminated", "kill -9 $$", 1, **{"fault-tolerance/job-retry-num": "5"})))
    with runner.client() as http:
        wait_for_text(http, created.metadata.id, "attempt 4 ended: .*restarting in 8s", timeout=60)
    client.stop_training_job(StopTrainingJobRequest(training_job_id=created.metadata.id,
                                                    body=JobActionType(action_type="terminate")))
    done = finished(client, created.metadata.id, timeout=20)
    assert done.status.phase == "Terminated"  # type: ignore[attr-defined]
    time.sleep(9)  # past the backoff: nothing started again
    records = finished(client, created.metadata.id).status.running_records  # type: ignore[attr-defined]
    assert len(records) == 4 and records[-1].end_recover == "job_reschedule"  # it was waiting
    assert "attempt 5 of 6" not in log_of(client, created.metadata.id, "worker-0")
    assert not task_pids(created.metadata.id)


def test_the_first_failure_names_the_rank_that_raised_not_the_timeouts(runner: LiveServer,
                                                                       client: ModelArtsClient) -> None:
    # Every rank starts, then rank 5 raises; the seven others notice (its flag file, in the job's
    # shared directory) and each fails a few ms later with a fake NCCL timeout traceback of its own,
    # mostly within the executor's same poll round, so only the exit times tell who was first.
    script = ("import os, pathlib, signal, sys, time\n"
              "rank = int(os.environ['RANK'])\n"
              "pathlib.Path(f'up-{rank}').touch()\n"
              "while len(list(pathlib.Path().glob('up-*'))) < 8: time.sleep(0.01)\n"
              "if rank == 5:\n"
              "    pathlib.Path('failed').touch()\n"
              "    raise RuntimeError('CUDA out of memory. Tried to allocate 2.00 GiB')\n"
              "def timeout(*_):\n"
              "    print('Traceback (most recent call last):', file=sys.stderr)\n"
              "    print('  File \"dist.py\", line 1, in <module>', file=sys.stderr)\n"
              "    print(f'torch.distributed.DistBackendError: NCCL timeout on rank {rank}', file=sys.stderr)\n"
              "    sys.exit(1)\n"
              "signal.signal(signal.SIGTERM, timeout)\n"
              "while not pathlib.Path('failed').exists(): time.sleep(0.005)\n"
              "time.sleep(0.05)\n"
              "timeout()\n")
    body = job("eight", f'{PY} -c "$SCRIPT"', 8)
    body.algorithm.environments = {"SCRIPT": script}
    created = client.create_training_job(CreateTrainingJobRequest(body=body))
    status = finished(client, created.metadata.id).status  # type: ignore[attr-defined]
    assert status.phase == "Failed"
    (record,) = status.running_records
    assert record.end_related_task == "worker-5"
    assert record.end_reason == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    timeouts = sum("NCCL timeout on rank" in log_of(client, created.metadata.id, f"worker-{rank}")
                   for rank in range(8) if rank != 5)
    assert timeouts == 7  # they all failed too
    with runner.client() as http:
        said = events(http, created.metadata.id)
    assert ("Training job failed: worker-5 failed first: RuntimeError: CUDA out of memory. "
            "Tried to allocate 2.00 GiB.") in said


@pytest.mark.parametrize(("annotations", "export", "field"), [
    ({"fault-tolerance/job-retry-num": "two"}, None, "metadata.annotations"),
    ({"fault-tolerance/job-retry-num": "-1"}, None, "metadata.annotations"),
    ({"fault-tolerance/job-retry-num": "129"}, None, "metadata.annotations"),
    ({"fault-tolerance/hang-retry": "yes"}, None, "metadata.annotations"),
    ({}, LogExportPath(host_path="/tmp/logs"), "spec.log_export_path.host_path"),  # no --export-roots
    ({}, LogExportPath(obs_url="ftp://bucket/logs"), "spec.log_export_path.obs_url"),
    ({}, LogExportPath(obs_url="obs://Bad_Bucket/logs"), "spec.log_export_path.obs_url"),
    ({}, LogExportPath(obs_url="s3://bucket/../up"), "spec.log_export_path.obs_url"),
    ({}, LogExportPath(obs_url="obs://bucket/logs"), "spec.log_export_path.obs_url"),  # no --export-obs-urls
])
def test_bad_fault_tolerance_and_export_options_are_refused_at_create(
        client: ModelArtsClient, annotations: dict[str, str], export: LogExportPath | None, field: str) -> None:
    body = job("bad", "true", 1, **annotations)
    body.spec.log_export_path = export
    with pytest.raises(ClientRequestException) as refused:
        client.create_training_job(CreateTrainingJobRequest(body=body))
    assert refused.value.status_code == 400 and refused.value.error_code == "ModelArts.2788"
    assert field in refused.value.error_msg


@pytest.fixture
def hasty(runners: Runners) -> Iterator[ModelArtsClient]:
    """A client of a server that finds a job hung after 2 s of silence."""
    live = runners.start(hang_timeout_seconds=2.0)
    sdk = sdk_client(live.url)
    sdk.live = live  # type: ignore[attr-defined]
    yield sdk
    sdk.get_http_client().close()


def test_a_hung_job_with_hang_retry_is_restarted(hasty: ModelArtsClient) -> None:
    created = hasty.create_training_job(CreateTrainingJobRequest(body=job(
        "hangs", f"{PY} {EXAMPLE} --epochs 2 --steps 4 --sleep 0.01 --hang-at 1", 1,
        **{"fault-tolerance/job-retry-num": "1", "fault-tolerance/hang-retry": "true"})))
    # Attempt 2 hangs too: no attempt is left, so the job fails.
    status = finished(hasty, created.metadata.id).status  # type: ignore[attr-defined]
    assert status.phase == "Failed"
    first, second = status.running_records
    assert (first.end_reason, first.end_related_task, first.end_recover) == ("no task printed for 2 s", "",
                                                                             "job_reschedule")
    assert (second.start_type, second.end_recover) == ("restarted", "")
    log = log_of(hasty, created.metadata.id, "worker-0")
    assert log.count("hanging on purpose") == 2
    assert re.search(PLATFORM + "the job is hung: no task has printed for 2 s; stopping it to restart\n", log)
    with hasty.live.client() as http:  # type: ignore[attr-defined]
        said = events(http, created.metadata.id)
    assert "Training job restarted (attempt 2 of 2) because no task printed for 2 s." in said
    assert said[-1] == "Training job failed: no task printed for 2 s."


def test_without_hang_retry_a_hang_is_only_reported_and_a_silent_rank_is_named(hasty: ModelArtsClient) -> None:
    command = "if [ $RANK = 1 ]; then sleep 6; else for i in $(seq 30); do echo tick $i; sleep 0.2; done; fi"
    two = hasty.create_training_job(CreateTrainingJobRequest(body=job("silent", command, 2)))
    quiet = hasty.create_training_job(CreateTrainingJobRequest(body=job(
        "quiet", "sleep 5", 1, **{"fault-tolerance/job-retry-num": "1"})))
    with hasty.live.client() as http:  # type: ignore[attr-defined]
        assert finished(hasty, quiet.metadata.id).status.phase == "Completed"  # type: ignore[attr-defined]
        assert "Training job is hung: no task has printed for 2 s." in events(http, quiet.metadata.id)
        assert re.search(PLATFORM + "the job is hung: no task has printed for 2 s\n",
                         log_of(hasty, quiet.metadata.id, "worker-0"))
        assert finished(hasty, two.metadata.id).status.phase == "Completed"  # type: ignore[attr-defined]
        said = events(http, two.metadata.id)
    assert "[worker-1] Has printed nothing for 2 s while other tasks still print (a stuck rank?)." in said
    assert not any("worker-0] Has printed nothing" in e or "is hung" in e for e in said)


def test_delete_wins_over_a_pending_restart(runner: LiveServer, client: ModelArtsClient) -> None:
    created = client.create_training_job(CreateTrainingJobRequest(body=job(
        "deleted", f"{PY} -c 'import os, time; time.sleep(0.3); os.kill(os.getpid(), 9)'", 1,
        **{"fault-tolerance/job-retry-num": "5"})))
    with runner.client() as http:
        wait_for_text(http, created.metadata.id, "attempt 2 ended: .*restarting in 2s", timeout=30)
    client.delete_training_job(DeleteTrainingJobRequest(training_job_id=created.metadata.id))
    time.sleep(3)  # past the backoff
    assert not task_pids(created.metadata.id)  # nothing started again
    with pytest.raises(ClientRequestException) as gone:
        client.show_training_job_details(ShowTrainingJobDetailsRequest(training_job_id=created.metadata.id))
    assert gone.value.error_code == "ModelArts.2775"
