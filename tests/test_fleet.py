"""Three `jobtail serve` replicas (separate data directories; one PostgreSQL database, one
SeaweedFS store, one master key) behind nginx configured from docs/deploy/nginx-jobtail.conf,
driven with the official SDK, `jobtail ship` and jobtail.client; replicas are SIGKILLed under
a follow and under a 100 MB ship."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from huaweicloudsdkmodelarts.v1 import (
    CreateTrainingJobRequest,
    Job,
    JobAlgorithm,
    JobMetadata,
    ShowTrainingJobDetailsRequest,
    ShowTrainingJobLogsPreviewRequest,
    Spec,
    SpecResource,
)
from support.nginx import TEMPLATE, Balancer
from support.postgres import PostgresServer
from support.sdk import sdk_client
from support.seaweedfs import SeaweedServer
from support.serve import clean_env, free_port, wait_until_serving

from jobtail.client import Client, Credentials, RequestFailed
from jobtail.core.types import TaskRef
from jobtail.settings import Settings
from jobtail.wiring import open_store

pytestmark = pytest.mark.fleet


class Replica:
    def __init__(self, root: Path, name: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = root / name
        self.log = root / f"{name}.log"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jobtail", "serve", "--executor", "none", "--data-dir", str(self.data_dir),
                 "--port", str(self.port), "--log-level", "warning"], env=self.env, stdout=out, stderr=subprocess.STDOUT)
        if wait:
            self.wait()

    def wait(self) -> None:
        assert self.proc is not None
        wait_until_serving(self.url, self.proc, 60, lambda: self.log.read_text()[-3000:])

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)

    def streams(self) -> int:
        """Connections established to this replica's port now (the balancer keeps no idle ones)."""
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == self.port and fields[3] == "01":
                    count += 1
        return count


@dataclass
class Fleet:
    replicas: list[Replica]
    balancer: Balancer
    credentials: Credentials  # the admin's, for the balancer
    settings: Settings  # the shared backends, for reading what is stored
    env: dict[str, str]

    def client(self, url: str | None = None, credentials: Credentials | None = None) -> Client:
        return Client(url or self.balancer.url, credentials=credentials or self.credentials)

    def create_job(self, name: str) -> str:
        body = {"kind": "job", "metadata": {"name": name}, "algorithm": {"command": "shipped"},
                "spec": {"resource": {"node_count": 1}}}
        with self.client() as client:
            return str(client.json("POST", "/v2/{project_id}/training-jobs", json=body)["metadata"]["id"])

    def stored(self, job_id: str, task: str = "worker-0") -> bytes:
        store = open_store(self.settings)
        try:
            state = store.state(TaskRef(self.credentials.project_id, job_id, task))
            return b"".join(store.read(state, 0, state.end_offset))
        finally:
            store.close()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer,
          seaweedfs: SeaweedServer) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    database_url = postgres.create_database(f"fleet_{os.getpid()}")
    blob_url = seaweedfs.blob_url()
    env = clean_env(**seaweedfs.env, JOBTAIL_DATABASE_URL=database_url, JOBTAIL_BLOB_URL=blob_url,
                    JOBTAIL_MASTER_KEY_FILE=str(root / "master.key"))
    env.pop("AWS_PROFILE", None)
    replicas = [Replica(root, name, env) for name in ("a", "b", "c")]
    balancer = None
    try:
        replicas[0].start()  # the first start makes the master key, the schema and the admin credential
        for replica in replicas[1:]:
            replica.start(wait=False)
        for replica in replicas[1:]:
            replica.wait()
        balancer = Balancer(root / "nginx", [f"127.0.0.1:{r.port}" for r in replicas], free_port())
        admin = Credentials.load(replicas[0].data_dir / "credentials.json")
        credentials = Credentials(admin.access_key, admin.secret_key, admin.project_id, balancer.url)
        settings = Settings(data_dir=root / "reader", database_url=database_url, blob_url=blob_url)
        saved = {name: os.environ.get(name) for name in seaweedfs.env}
        os.environ.update(seaweedfs.env)  # for this process's own reads of the store
        try:
            yield Fleet(replicas, balancer, credentials, settings, env)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    finally:
        if balancer is not None:
            balancer.stop()
        for replica in replicas:
            replica.stop()


def _eventually(condition: Callable[[], bool], what: str, timeout: float) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, what
        time.sleep(0.01)
    return time.monotonic() - started


def _append(client: Client, job_id: str, data: bytes, offset: int | None = None) -> Any:
    return client.json("POST", f"/v2/{{project_id}}/training-jobs/{job_id}/tasks/worker-0/logs", content=data,
                       headers={"Content-Type": "application/octet-stream"},
                       params={} if offset is None else {"offset": offset})


def _preview(client: Client, job_id: str) -> str:
    return str(client.json("GET", f"/v2/{{project_id}}/training-jobs/{job_id}/tasks/worker-0/logs/preview")["content"])


def _ship(fleet: Fleet, job_id: str, path: Path, *extra: str) -> subprocess.Popen[bytes]:
    credentials = path.with_suffix(".credentials.json")
    credentials.write_text(json.dumps({"access_key": fleet.credentials.access_key, "secret_key":
                                       fleet.credentials.secret_key, "project_id": fleet.credentials.project_id,
                                       "endpoint": fleet.balancer.url}))
    os.chmod(credentials, 0o600)
    with open(path.with_suffix(".ship.log"), "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "jobtail", "ship", "--job", job_id, "--file", str(path),
                                 "--credentials", str(credentials), "--max-backoff", "0.5", *extra], env=fleet.env,
                                stdout=log, stderr=subprocess.STDOUT)


def _shipped(shipper: subprocess.Popen[bytes], path: Path, timeout: float) -> None:
    try:
        code = shipper.wait(timeout=timeout)
    finally:
        if shipper.poll() is None:
            shipper.kill()
            shipper.wait()
    assert code == 0, path.with_suffix(".ship.log").read_text()


def test_the_sdk_and_the_shipper_through_the_balancer(fleet: Fleet, tmp_path: Path) -> None:
    creds = fleet.credentials
    sdk = sdk_client(fleet.balancer.url, creds.project_id, creds.access_key, creds.secret_key)
    try:
        job = Job(kind="job", metadata=JobMetadata(name="through-nginx"), algorithm=JobAlgorithm(command="shipped"),
                  spec=Spec(resource=SpecResource(flavor_id="modelarts.vm.cpu.8u", node_count=1)))
        job_id = sdk.create_training_job(CreateTrainingJobRequest(body=job)).metadata.id
        lines = b"".join(b"epoch %d step %d loss=%.4f\n" % (i // 100, i, 1 / (i + 1)) for i in range(20_000))
        source = tmp_path / "train.log"
        source.write_bytes(lines)
        _shipped(_ship(fleet, job_id, source), source, 60)
        for _ in range(3):  # round robin: every replica answers, each the same
            shown = sdk.show_training_job_details(ShowTrainingJobDetailsRequest(training_job_id=job_id))
            assert shown.metadata.name == "through-nginx"
            preview = sdk.show_training_job_logs_preview(
                ShowTrainingJobLogsPreviewRequest(training_job_id=job_id, task_id="worker-0"))
            assert preview.full_size == len(lines) and lines.decode().endswith(preview.content)
        with fleet.client() as client:
            page = client.json("GET", f"/v2/{{project_id}}/training-jobs/{job_id}/logs/worker-0",
                               params={"base_line": 100, "lines": 3, "order": "asc"})
            assert "epoch 1 step 101 " in json.dumps(page) and "step 104 " not in json.dumps(page)
            found = client.json("GET", f"/v2/{{project_id}}/training-jobs/{job_id}/tasks/worker-0/logs/search",
                                params={"q": "step 19999 "})
            assert "step 19999 loss" in json.dumps(found)
        assert fleet.stored(job_id) == lines
    finally:
        sdk.get_http_client().close()


def test_an_append_through_one_replica_reaches_another_within_a_second(fleet: Fleet) -> None:
    job_id = fleet.create_job("fresh")
    a, b = fleet.replicas[0], fleet.replicas[1]
    with fleet.client(a.url) as through_a, fleet.client(b.url) as through_b:
        _append(through_a, job_id, b"first\n")
        follow = iter(through_b.follow(job_id, offset=0))
        assert next(follow)[1] == b"first\n"
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(next(follow)[1]), daemon=True)
        reader.start()
        time.sleep(0.2)  # the follower waits on replica B
        _append(through_a, job_id, b"from replica A\n")
        took = _eventually(lambda: _preview(through_b, job_id).endswith("from replica A\n"), "B's preview is stale", 1.0)
        reader.join(timeout=1.0 - took if took < 1.0 else 0.01)
        assert got == [b"from replica A\n"], "B's follow stream did not get the append within a second"


def test_a_follow_resumes_on_another_replica_when_its_replica_is_killed(fleet: Fleet) -> None:
    job_id = fleet.create_job("followed")
    stop, paused = threading.Event(), threading.Event()
    written: list[bytes] = []

    def writer() -> None:  # as a shipper does: by offset, retried until acknowledged
        with fleet.client() as client:
            number = offset = 0
            while not stop.is_set():
                line = b"line %06d\n" % number
                while True:
                    try:
                        offset = int(_append(client, job_id, line, offset)["full_size"])
                        break
                    except (RequestFailed, httpx.TransportError):  # the replica died under it
                        time.sleep(0.05)
                written.append(line)
                number += 1
                time.sleep(0.01)
                while paused.is_set() and not stop.is_set():
                    time.sleep(0.01)

    producer = threading.Thread(target=writer, daemon=True)
    producer.start()
    received = bytearray()
    victim = None
    with fleet.client() as client:
        follow = client.follow(job_id, offset=0, retry_wait=0.2)
        deadline = time.monotonic() + 60
        for _, data in follow:
            assert time.monotonic() < deadline, "the follow stalled"
            received += data
            if victim is None and len(received) > 2000:
                paused.set()  # so that the only connection left to a replica is the follow's
                time.sleep(0.3)
                serving = [r for r in fleet.replicas if r.streams() > 0]
                assert len(serving) == 1, "cannot tell which replica holds the follow stream"
                victim = serving[0]
                victim.kill()
                killed_at = len(received)
                paused.clear()
            if victim is not None and len(received) > killed_at + 2000:
                break
        stop.set()
        producer.join(timeout=30)
        assert follow.reconnects >= 1
    assert victim is not None
    victim.start()  # for the other tests
    stored = fleet.stored(job_id)
    assert bytes(received) == stored[:len(received)], "the follower saw a gap or a duplicate"
    assert stored == b"".join(written)


def test_a_100_mb_ship_finishes_whole_when_a_replica_is_killed(fleet: Fleet, tmp_path: Path) -> None:
    job_id = fleet.create_job("big-ship")
    source = tmp_path / "big.log"
    block = b"".join(b"%08d the quick brown fox jumps over the lazy dog, loss=%.6f\n" % (i, i / 7) for i in range(16_384))
    with open(source, "wb") as out:
        while out.tell() < 100 * 1024 * 1024:
            out.write(block)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    shipper = _ship(fleet, job_id, source, "--batch-bytes", "4194304")
    with fleet.client() as client:
        size = f"/v2/{{project_id}}/training-jobs/{job_id}/tasks/worker-0/logs/size"
        _eventually(lambda: client.json("GET", size)["full_size"] > 30 * 1024 * 1024, "the ship did not get going", 60)
    victim = fleet.replicas[2]
    victim.kill()
    try:
        _shipped(shipper, source, 120)
    finally:
        victim.start()
    assert hashlib.sha256(fleet.stored(job_id)).hexdigest() == digest


def test_two_replicas_sealing_one_log_at_once_leave_one_segment_set(fleet: Fleet) -> None:
    job_id = fleet.create_job("sealed-twice")
    ref = TaskRef(fleet.credentials.project_id, job_id, "worker-0")
    stores = [open_store(fleet.settings), open_store(fleet.settings)]
    try:
        data = b"".join(b"row %d\n" % i for i in range(50_000))
        stores[0].append(ref, data)
        barrier = threading.Barrier(2)

        def seal(index: int) -> None:
            barrier.wait()
            stores[index].seal(ref)

        sealers = [threading.Thread(target=seal, args=(i,)) for i in range(2)]
        for sealer in sealers:
            sealer.start()
        for sealer in sealers:
            sealer.join(timeout=60)
        state = stores[1].state(ref)
        assert state.sealed_offset == state.end_offset == len(data)
        with stores[0]._logs._writer.connect() as conn:  # type: ignore[attr-defined]
            from sqlalchemy import text

            rows = conn.execute(text("SELECT base_offset, length FROM segments WHERE log_id = :log ORDER BY base_offset"),
                                {"log": state.log_id}).all()
        ends = 0
        for base, length in rows:
            assert base == ends, f"segments overlap or leave a gap: {rows}"
            ends = base + length
        assert ends == len(data)
        assert b"".join(stores[0].read(state, 0, state.end_offset)) == data
    finally:
        for store in stores:
            store.close()


def test_a_revoked_credential_is_refused_by_every_replica(fleet: Fleet) -> None:
    def admin(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "jobtail", "admin", *args, "--data-dir",
                               str(fleet.replicas[1].data_dir)], env=fleet.env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    issued = json.loads(admin("credential", "create", "--project", fleet.credentials.project_id, "--role", "viewer",
                              "--json"))
    viewer = Credentials(issued["access_key"], issued["secret_key"], fleet.credentials.project_id)
    job = "/v2/{project_id}/training-jobs/00000000-0000-4000-8000-000000000000"  # none: 2775 once admitted

    def code(replica: Replica) -> str:
        with Client(replica.url, credentials=viewer) as client:
            return str(client.request("GET", job).json()["error_code"])

    assert [code(r) for r in fleet.replicas] == ["ModelArts.2775"] * 3
    admin("credential", "revoke", viewer.access_key)
    for replica in fleet.replicas:
        _eventually(lambda r=replica: code(r) != "ModelArts.2775", "a replica still admits the revoked key", 1.0)  # type: ignore[misc]
        assert code(replica) == "APIGW.0301"


def test_the_deploy_guide_shows_the_nginx_file_the_test_runs() -> None:
    guide = (TEMPLATE.parents[1] / "deploy.md").read_text()
    assert f"```nginx\n{TEMPLATE.read_text()}```" in guide


def test_the_deploy_guides_kubernetes_manifests_probe_liveness_and_readiness() -> None:
    import re

    import yaml

    guide = (TEMPLATE.parents[1] / "deploy.md").read_text()
    [manifests] = re.findall(r"```yaml\n(.*?)```", guide, re.S)
    deployment, service = yaml.safe_load_all(manifests)
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz/ready"
    names = {variable["name"] for variable in container["env"]}
    assert {"JOBTAIL_DATABASE_URL", "JOBTAIL_BLOB_URL", "JOBTAIL_MASTER_KEY_FILE"} <= names
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
