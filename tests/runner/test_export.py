"""Log export (`spec.log_export_path`) with the official SDK as the client: each task's whole log
to a host path inside `--export-roots` and to S3 (the SeaweedFS server), byte for byte; no write
through a symlink; a 1 GiB log with flat memory."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkmodelarts.v1 import (
    CreateTrainingJobRequest,
    Job,
    JobAlgorithm,
    JobMetadata,
    LogExportPath,
    ModelArtsClient,
    Spec,
    SpecResource,
)
from support.engine import new_job
from support.jobs import PY, events
from support.live import LiveServer
from support.runners import Runners
from support.sdk import PROJECT, sdk_client
from support.seaweedfs import BUCKET, SeaweedServer

from jobtail.core.jobs import JobService
from jobtail.core.store import LogStore
from jobtail.core.types import TaskRef
from jobtail.runner.export import TRIES, LogExporter, write_in_root

pytestmark = pytest.mark.parametrize("meta_url", ["sqlite"], indirect=True)


@pytest.fixture
def exporting(runners: Runners, tmp_path: Path, seaweedfs: SeaweedServer,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LiveServer, ModelArtsClient, Path]]:
    for name, value in seaweedfs.env.items():
        monkeypatch.setenv(name, value)
    roots = tmp_path / "exports"
    roots.mkdir()
    live = runners.start(export_roots=str(roots), export_s3_endpoint=seaweedfs.endpoint,
                         export_obs_urls=f"s3://{BUCKET}/exports/, s3://{BUCKET}/teams/{{project_id}}/")
    sdk = sdk_client(live.url)
    yield live, sdk, roots
    sdk.get_http_client().close()


def job(name: str, command: str, nodes: int, export: LogExportPath) -> Job:
    return Job(kind="job", metadata=JobMetadata(name=name), algorithm=JobAlgorithm(command=command),
               spec=Spec(resource=SpecResource(flavor_id="modelarts.vm.cpu.8u", node_count=nodes),
                         log_export_path=export))


def exported_events(live: LiveServer, job_id: str, wanted: int) -> list[str]:
    deadline = time.monotonic() + 60
    with live.client() as http:
        while True:
            said = [e for e in events(http, job_id) if "Log export" in e]
            if len(said) >= wanted:
                return said
            assert time.monotonic() < deadline, said
            time.sleep(0.2)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_task_logs_export_to_a_host_path_and_to_s3_byte_for_byte(
        exporting: tuple[LiveServer, ModelArtsClient, Path], seaweedfs: SeaweedServer) -> None:
    live, client, roots = exporting
    prefix = f"exports/{uuid.uuid4().hex}"
    # ~9 MiB from worker-1: more than one S3 part; random bytes, invalid UTF-8 included.
    command = f"{PY} -c \"import os, sys; sys.stdout.buffer.write(os.urandom((1 + 8 * int(os.environ['RANK'])) << 20))\""
    export = LogExportPath(host_path=str(roots / "team" / "run-1"), obs_url=f"obs://{BUCKET}/{prefix}")
    created = client.create_training_job(CreateTrainingJobRequest(body=job("export", command, 2, export)))
    job_id = created.metadata.id
    said = exported_events(live, job_id, 4)
    assert all(" failed" not in e for e in said), said
    s3 = seaweedfs.client()
    for task in ("worker-0", "worker-1"):
        ref = TaskRef(PROJECT, job_id, task)
        state = live.store.state(ref)
        whole = b"".join(live.store.read(state, 0, state.end_offset))
        assert len(whole) > 1 << 20
        name = f"modelarts-job-{job_id}-{task}.log"
        on_disk = roots / "team" / "run-1" / name
        assert sha(on_disk.read_bytes()) == sha(whole)
        assert on_disk.stat().st_mode & 0o777 == 0o640
        assert sha(s3.get_object(Bucket=BUCKET, Key=f"{prefix}/{name}")["Body"].read()) == sha(whole)
        assert f"[{task}] Log exported to obs://{BUCKET}/{prefix}/{name} ({len(whole)} bytes)." in said
        assert f"[{task}] Log exported to {on_disk} ({len(whole)} bytes)." in said
    assert not [p for p in (roots / "team" / "run-1").iterdir() if p.name.startswith(".")]  # no temporaries left


def test_an_export_never_writes_through_a_symlink_below_the_root(
        exporting: tuple[LiveServer, ModelArtsClient, Path], tmp_path: Path) -> None:
    live, client, roots = exporting
    outside = tmp_path / "outside"
    outside.mkdir()
    (roots / "shared").symlink_to(outside)  # as a task could plant in a directory it shares
    export = LogExportPath(host_path=str(roots / "shared" / "logs"))
    created = client.create_training_job(CreateTrainingJobRequest(body=job("planted", "echo hi", 1, export)))
    (said,) = exported_events(live, created.metadata.id, 1)
    assert said.startswith(f"[worker-0] Log export to {roots}/shared/logs/modelarts-job-") and " failed: " in said
    assert not any(outside.rglob("*"))


def test_an_obs_url_must_lie_under_an_allowed_url_for_its_own_project(
        exporting: tuple[LiveServer, ModelArtsClient, Path], seaweedfs: SeaweedServer) -> None:
    live, client, _ = exporting
    run = uuid.uuid4().hex
    mine = LogExportPath(obs_url=f"obs://{BUCKET}/teams/{PROJECT}/{run}")  # s3://…/teams/{project_id}/ allows it
    created = client.create_training_job(CreateTrainingJobRequest(body=job("own-prefix", "echo hi", 1, mine)))
    (said,) = exported_events(live, created.metadata.id, 1)
    name = f"modelarts-job-{created.metadata.id}-worker-0.log"
    state = live.store.state(TaskRef(PROJECT, created.metadata.id, "worker-0"))
    whole = b"".join(live.store.read(state, 0, state.end_offset))
    assert b"hi\n" in whole
    assert said == f"[worker-0] Log exported to obs://{BUCKET}/teams/{PROJECT}/{run}/{name} ({len(whole)} bytes)."
    assert seaweedfs.client().get_object(Bucket=BUCKET, Key=f"teams/{PROJECT}/{run}/{name}")["Body"].read() == whole
    for elsewhere in (f"obs://{BUCKET}/teams/another-project/{run}",  # another project's prefix
                      f"s3://{BUCKET}/exports-2/{run}",  # a prefix that only starts like an allowed one
                      f"s3://{BUCKET}/{run}", f"s3://other-bucket/exports/{run}"):
        with pytest.raises(ClientRequestException) as refused:
            client.create_training_job(CreateTrainingJobRequest(
                body=job("elsewhere", "true", 1, LogExportPath(obs_url=elsewhere))))
        assert refused.value.status_code == 400 and refused.value.error_code == "ModelArts.2788"
        assert "spec.log_export_path.obs_url" in refused.value.error_msg
        assert "outside the buckets and prefixes" in refused.value.error_msg


def test_the_exporter_checks_the_obs_url_again_when_it_writes(store: LogStore, jobs: JobService) -> None:
    """A job created while a URL was allowed, ending after the operator took it away, is not exported there."""
    job = new_job(store, "proj-export", "taken-away")
    exporter = LogExporter(jobs, store, (), ("s3://still-allowed/",), {})
    exporter.retry_first_seconds = 0.01
    exporter._export(job, "", "obs://no-longer/logs")
    said = [e.message for e in jobs.events("proj-export", job.id, offset=0, limit=100, descending=False)[1]]
    failed = [m for m in said if m.startswith("[worker-0] Log export to obs://no-longer/logs/modelarts-job-")]
    assert failed and "failed: InvalidJob: " in failed[0] and "lies outside" in failed[0], said


def test_a_1_gib_log_exports_with_flat_memory(store: LogStore, tmp_path: Path) -> None:
    ref = TaskRef("proj-export", new_job(store, "proj-export", "big").id, "worker-0")
    piece = os.urandom(8 << 20)
    digest, offset = hashlib.sha256(), 0
    for _ in range(128):  # 1 GiB, sealed into segments as it grows
        store.append(ref, piece, offset)
        offset += len(piece)
        digest.update(piece)
        store.seal(ref)
    del piece
    state = store.state(ref)
    assert state.end_offset == 1 << 30
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
        f.write("5")
    before = _status("VmRSS")
    written = write_in_root(tmp_path, PurePosixPath("a/b"), "big.log", store.read(state, 0, state.end_offset))
    peak = _status("VmHWM")
    assert written == 1 << 30
    with open(tmp_path / "a" / "b" / "big.log", "rb") as f:
        copy = hashlib.sha256()
        while block := f.read(8 << 20):
            copy.update(block)
    assert copy.hexdigest() == digest.hexdigest()
    assert peak - before < 128 << 20, f"export grew the RSS by {(peak - before) >> 20} MiB"


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(field)


def test_a_failed_copy_is_retried_with_backoff_then_reported(store: LogStore, jobs: JobService) -> None:
    job = new_job(store, "proj-export", "flaky")
    exporter = LogExporter(jobs, store, (), (), {})
    exporter.retry_first_seconds = 0.05
    calls: list[float] = []

    def flaky() -> int:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise OSError(28, "No space left on device")
        return 5

    exporter._try(job, "worker-0", "/x/y.log", flaky)
    assert len(calls) == 3 and calls[1] - calls[0] >= 0.05 and calls[2] - calls[1] >= 0.1  # doubling
    calls.clear()

    def broken() -> int:
        calls.append(time.monotonic())
        raise OSError(28, "No space left on device")

    exporter._try(job, "worker-0", "/x/z.log", broken)
    assert len(calls) == TRIES and calls[-1] - calls[0] >= 0.05 + 0.1 + 0.2
    said = [e.message for e in jobs.events("proj-export", job.id, offset=0, limit=100, descending=False)[1]]
    assert "[worker-0] Log exported to /x/y.log (5 bytes)." in said
    assert "[worker-0] Log export to /x/z.log failed: OSError: [Errno 28] No space left on device" in said
