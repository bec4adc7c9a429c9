"""Chaos: real `jobtail serve` and `jobtail ship` processes killed with SIGKILL at random moments.

The acceptance tests of ingest: a 200 MB file shipped while the server is killed and restarted
at least five times and the shipper at least twice arrives byte for byte (sha256), and a server
killed between writing a segment blob and recording it loses nothing and leaves no orphan behind.
The random seed is printed, so a failure can be replayed with `JOBTAIL_CHAOS_SEED`.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from support.engine import backends_of, open_engine
from support.serve import ServeProcess, clean_env, jobtail

from jobtail.client import Client, Credentials
from jobtail.core.types import TaskRef
from jobtail.settings import Settings
from jobtail.wiring import open_store

pytestmark = pytest.mark.chaos

FILE_BYTES = 200_000_000
SERVER_KILLS = 6
SHIPPER_KILLS = 3


def generate(path: Path, size: int, rng: random.Random) -> str:
    """Training-log-like text, every MiB different (a chunk header), `size` bytes; its sha256."""
    lines = [f"step {i:6d} loss={rng.random():.6f} lr=3e-4 tokens/s={rng.randrange(10**5):6d} {'#' * (i % 40)}\n"
             for i in range(12_000)]
    block = "".join(lines).encode()[: 1 << 20]
    digest = hashlib.sha256()
    written = 0
    with open(path, "wb") as f:
        n = 0
        while written < size:
            piece = (f"== chunk {n} ==\n".encode() + block)[: size - written]
            f.write(piece)
            digest.update(piece)
            written += len(piece)
            n += 1
    return digest.hexdigest()


def stored_digest(data_dir: Path, project: str, job_id: str) -> tuple[int, str]:
    store = open_store(Settings(data_dir=data_dir, executor="none"))
    try:
        ref = TaskRef(project, job_id, "worker-0")
        digest, size = hashlib.sha256(), 0
        for piece in store.read(store.state(ref), 0, 1 << 62):
            digest.update(piece)
            size += len(piece)
        return size, digest.hexdigest()
    finally:
        store.close()


class Shipper:
    def __init__(self, argv: list[str], log: Path) -> None:
        self.argv, self.log, self.proc, self.starts = argv, log, None, 0
        self.start()

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, env=clean_env(), stdout=out, stderr=out)
        self.starts += 1

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)


def _size(admin: Client, path: str) -> int | None:
    try:
        response = admin.request("GET", path, timeout=2.0)
    except httpx.TransportError:
        return None
    return int(response.json()["full_size"]) if response.status_code == 200 else None


def test_a_200mb_file_arrives_exactly_once_through_server_and_shipper_kills(
    tmp_path: Path, serve_factory: Callable[..., ServeProcess]
) -> None:
    seed = int(os.environ.get("JOBTAIL_CHAOS_SEED", random.randrange(1 << 30)))
    print(f"chaos seed {seed}")
    rng = random.Random(seed)
    server = serve_factory("--orphan-grace-seconds", "0")
    server.start()
    project = server.project()
    job_id = jobtail("admin", "job", "create", "--project", project, "--name", "chaos", "--data-dir",
                     str(server.data_dir)).strip()
    credentials = server.ingest_credentials(job_id, tmp_path / "ingest.json")
    source = tmp_path / "train.log"
    expected = generate(source, FILE_BYTES, rng)
    admin = Client(server.url, credentials=Credentials.load(server.admin_credentials()))
    size_path = f"/v2/{project}/training-jobs/{job_id}/tasks/worker-0/logs/size"

    server_at = sorted(rng.uniform(0.03, 0.9) * FILE_BYTES for _ in range(SERVER_KILLS))
    shipper_at = sorted(rng.uniform(0.05, 0.85) * FILE_BYTES for _ in range(SHIPPER_KILLS))
    shipper = Shipper([sys.executable, "-m", "jobtail", "ship", "--job", job_id, "--file", str(source),
                       "--credentials", str(credentials), "--url", server.url, "--max-backoff", "0.3"],
                      tmp_path / "ship.log")
    kills = {"server": 0, "shipper": 0}
    deadline = time.monotonic() + 150
    try:
        while True:
            assert shipper.proc is not None
            if shipper.proc.poll() is not None:
                assert shipper.proc.returncode == 0, (seed, (tmp_path / "ship.log").read_text()[-3000:])
                break
            assert time.monotonic() < deadline, (seed, kills, (tmp_path / "ship.log").read_text()[-3000:])
            size = _size(admin, size_path)
            if size is not None and server_at and size >= server_at[0]:
                server_at.pop(0)
                time.sleep(rng.uniform(0.0, 0.15))  # somewhere inside the next requests or a seal
                server.kill()
                kills["server"] += 1
                time.sleep(rng.uniform(0.0, 0.3))
                server.start()
            elif size is not None and shipper_at and size >= shipper_at[0]:
                shipper_at.pop(0)
                time.sleep(rng.uniform(0.0, 0.1))
                shipper.kill()
                kills["shipper"] += 1
                shipper.start()
            time.sleep(0.02)
    finally:
        admin.close()
        if shipper.proc is not None and shipper.proc.poll() is None:
            shipper.kill()
        server.stop()
    assert kills == {"server": SERVER_KILLS, "shipper": SHIPPER_KILLS}, seed
    assert stored_digest(server.data_dir, project, job_id) == (FILE_BYTES, expected), seed


# A server that dies right after a segment blob is written, before the segment is recorded: the
# same `jobtail serve`, with the local blob store's put followed by an immediate exit.
CRASH_AFTER_BLOB = """
import os, sys
from jobtail.blobs import local
_put = local.LocalBlobStore.put
def _put_then_die(self, key, chunks):
    _put(self, key, chunks)
    if key.endswith(".seg"):  # a segment (not the start-up write check)
        os._exit(86)
local.LocalBlobStore.put = _put_then_die
_adopt = local.LocalBlobStore.adopt
def _adopt_then_die(self, key, path):  # the file head's seal links its file in place of a put
    adopted = _adopt(self, key, path)
    if adopted and key.endswith(".seg"):
        os._exit(86)
    return adopted
local.LocalBlobStore.adopt = _adopt_then_die
from jobtail.cli import main
sys.argv[0] = "jobtail"
main()
"""


def _blobs(data_dir: Path) -> set[str]:
    root = data_dir / "blobs"
    return {p.relative_to(root).as_posix() for p in root.rglob("*.seg")}


def test_a_server_killed_between_blob_and_record_reads_correctly_and_sweeps_the_orphan(
    tmp_path: Path, serve_factory: Callable[..., ServeProcess]
) -> None:
    crashing = serve_factory("--seal-bytes", "65536", python=[sys.executable, "-c", CRASH_AFTER_BLOB])
    crashing.start()
    project = crashing.project()
    job_id = jobtail("admin", "job", "create", "--project", project, "--name", "mid-seal", "--data-dir",
                     str(crashing.data_dir)).strip()
    logs = f"/v2/{project}/training-jobs/{job_id}/tasks/worker-0/logs"
    first = b"".join(f"line {i} before the crash\n".encode() for i in range(4000))  # ~100 KB > seal_bytes
    with Client(crashing.url, credentials=Credentials.load(crashing.admin_credentials())) as admin:
        assert admin.json("POST", logs, params={"offset": 0}, content=first) == {"full_size": len(first)}
    assert crashing.proc is not None
    assert crashing.proc.wait(timeout=30) == 86, "the seal after the append should have crashed the server"
    orphans = _blobs(crashing.data_dir)
    assert len(orphans) == 1

    server = serve_factory("--orphan-grace-seconds", "0", "--seal-bytes", "65536")
    server.start()
    with Client(server.url, credentials=Credentials.load(server.admin_credentials())) as admin:
        deadline = time.monotonic() + 10
        while _blobs(server.data_dir) & orphans:
            assert time.monotonic() < deadline, "the orphan blob was not swept"
            time.sleep(0.05)
        assert admin.json("GET", logs + "/preview")["content"].encode() == first
        second = b"line after the restart\n" * 3000
        appended = admin.json("POST", logs, params={"offset": len(first)}, content=second)
        assert appended == {"full_size": len(first + second)}
        while not _blobs(server.data_dir):
            assert time.monotonic() < deadline, "the head was never sealed after the restart"
            time.sleep(0.05)
        assert admin.json("GET", logs + "/preview")["content"].encode() == first + second
        assert admin.json("POST", logs, params={"offset": 0}, content=first) == {"full_size": len(first + second)}
    server.stop()
    settings = Settings(data_dir=server.data_dir, executor="none")
    store = open_engine(settings.database_url, settings.blob_url).store
    try:
        state = store.state(TaskRef(project, job_id, "worker-0"))
        recorded = backends_of(store).logs.segment_keys("jobs/")
        assert recorded == _blobs(server.data_dir) and state.sealed_offset == len(first + second)
    finally:
        store.close()
