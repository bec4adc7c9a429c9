"""The local read cache for remote blob stores (`jobtail.blobs.cache`): exact bytes for any range,
one remote read per block, the size bound and LRU order, damage detected and refetched, threads
and processes sharing one directory, and a whole LogStore on SeaweedFS behind it."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from support.engine import create_job

from jobtail.blobs.cache import BLOCK_BYTES, CachedBlobStore
from jobtail.blobs.local import LocalBlobStore
from jobtail.blobs.memory import MemoryBlobStore
from jobtail.blobs.registry import open_blobs, open_cached_blobs
from jobtail.core.blob_store import BlobInfo, BlobNotFound, BlobStore
from jobtail.core.types import TaskRef
from jobtail.settings import Settings
from jobtail.wiring import open_jobs

KEY = "jobs/job-1/worker-0/00000000000000000000-00000000000000010000.seg"
HEADER = 12  # bytes before each cached block's data


class Counting:
    """A BlobStore that counts the reads that reach it."""

    def __init__(self, inner: BlobStore) -> None:
        self.inner, self.reads = inner, 0

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        return self.inner.put(key, chunks)

    def read(self, key: str, start: int, end: int) -> bytes:
        self.reads += 1
        return self.inner.read(key, start, end)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        return self.inner.list(prefix)

    def sweep_partial(self, prefix: str, older_than: float) -> list[str]:
        return self.inner.sweep_partial(prefix, older_than)

    def close(self) -> None:
        self.inner.close()


def cached(tmp_path: Path, data: bytes, capacity: int = 10**9, block: int = 1000) -> tuple[CachedBlobStore, Counting]:
    remote = Counting(MemoryBlobStore())
    remote.put(KEY, [data])
    return CachedBlobStore(remote, tmp_path / "cache", capacity, block_bytes=block), remote


def cache_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if not p.name.endswith(".tmp"))


def test_every_range_reads_the_exact_bytes(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    store, _ = cached(tmp_path, data, block=1000)
    rng = random.Random(7)
    for _ in range(300):
        start = rng.randrange(-5, 10_500)
        end = rng.randrange(-5, 10_500)
        assert store.read(KEY, start, end) == data[max(start, 0):end]
    assert store.read(KEY, 9990, 20_000) == data[9990:]
    assert store.read(KEY, 10_000, 10_100) == b""


def test_a_missing_key_is_reported_and_nothing_is_cached(tmp_path: Path) -> None:
    store, _ = cached(tmp_path, b"x")
    with pytest.raises(BlobNotFound):
        store.read("jobs/nope", 0, 10)
    with pytest.raises(BlobNotFound):
        store.read("jobs/nope", 0, 0)
    assert cache_files(tmp_path / "cache") == []


def test_a_block_is_fetched_once_and_a_run_of_misses_in_one_read(tmp_path: Path) -> None:
    data = os.urandom(10_500)
    store, remote = cached(tmp_path, data, block=1000)
    assert store.read(KEY, 2500, 7500) == data[2500:7500]
    assert remote.reads == 1  # blocks 2..7 in one ranged read
    assert len(cache_files(tmp_path / "cache")) == 6
    assert store.read(KEY, 2000, 8000) == data[2000:8000]
    assert remote.reads == 1
    assert store.read(KEY, 0, 10**6) == data  # fetches 0..1 and 8..10 (the short last block)
    assert remote.reads == 3
    assert store.read(KEY, 0, 10**6) == data
    assert remote.reads == 3


def test_lookups_are_counted_per_block(tmp_path: Path) -> None:
    remote = MemoryBlobStore()
    remote.put(KEY, [os.urandom(5000)])
    seen: list[tuple[bool, int]] = []
    store = CachedBlobStore(remote, tmp_path / "c", 10**9, block_bytes=1000, on_lookup=lambda h, n: seen.append((h, n)))
    store.read(KEY, 0, 3000)
    store.read(KEY, 1500, 4500)
    assert seen == [(False, 3), (True, 1), (True, 1), (False, 2)]


def test_the_directory_stays_within_capacity_and_evicts_least_recently_used(tmp_path: Path) -> None:
    data = os.urandom(20_000)
    store, remote = cached(tmp_path, data, capacity=5 * (1000 + HEADER), block=1000)
    directory = tmp_path / "cache"
    for block in range(20):
        assert store.read(KEY, block * 1000, block * 1000 + 10) == data[block * 1000 : block * 1000 + 10]
        assert sum(p.stat().st_size for p in cache_files(directory)) <= store.capacity
    assert len(cache_files(directory)) == 5
    for age, path in enumerate(cache_files(directory)):  # blocks 15..19, made old, 19 oldest
        os.utime(path, (1_000_000 - age, 1_000_000 - age))
    reads = remote.reads
    assert store.read(KEY, 19_000, 19_010) == data[19_000:19_010]  # a hit: 19 becomes the newest
    assert remote.reads == reads
    store.read(KEY, 0, 10)  # a miss: evicts the least recently used, 18
    names = {p.name.rsplit("-", 1)[1] for p in cache_files(directory)}
    assert names == {"0", "15", "16", "17", "19"}


def test_a_block_larger_than_the_capacity_is_not_cached(tmp_path: Path) -> None:
    data = os.urandom(3000)
    store, remote = cached(tmp_path, data, capacity=500, block=1000)
    assert store.read(KEY, 0, 3000) == data
    assert store.read(KEY, 0, 3000) == data
    assert remote.reads == 2 and cache_files(tmp_path / "cache") == []


def test_a_truncated_cache_file_is_detected_and_refetched(tmp_path: Path) -> None:
    data = os.urandom(3000)
    store, remote = cached(tmp_path, data, block=1000)
    store.read(KEY, 0, 3000)
    damaged = cache_files(tmp_path / "cache")[1]
    full = damaged.stat().st_size
    os.truncate(damaged, full - 100)
    assert store.read(KEY, 0, 3000) == data  # the same process, which had verified it
    assert remote.reads == 2
    assert damaged.stat().st_size == full
    assert store.read(KEY, 0, 3000) == data
    assert remote.reads == 2


def test_a_corrupted_cache_file_is_detected_by_a_process_that_did_not_write_it(tmp_path: Path) -> None:
    data = os.urandom(3000)
    store, remote = cached(tmp_path, data, block=1000)
    store.read(KEY, 0, 3000)
    damaged = cache_files(tmp_path / "cache")[0]
    raw = bytearray(damaged.read_bytes())
    raw[500] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    fresh = CachedBlobStore(remote, tmp_path / "cache", 10**9, block_bytes=1000)  # as another process
    assert fresh.read(KEY, 0, 3000) == data
    assert remote.reads == 2
    assert CachedBlobStore(remote, tmp_path / "cache", 10**9, block_bytes=1000).read(KEY, 0, 3000) == data
    assert remote.reads == 2  # refetched once, then whole again


def test_delete_drops_the_cached_blocks(tmp_path: Path) -> None:
    store, _ = cached(tmp_path, os.urandom(3000), block=1000)
    store.read(KEY, 0, 3000)
    store.delete(KEY)
    assert cache_files(tmp_path / "cache") == []
    with pytest.raises(BlobNotFound):
        store.read(KEY, 0, 3000)


def test_threads_reading_while_evicting_always_get_the_right_bytes(tmp_path: Path) -> None:
    data = os.urandom(50_000)
    store, _ = cached(tmp_path, data, capacity=8 * (1000 + HEADER), block=1000)
    failures: list[str] = []

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(300):
            start = rng.randrange(0, 50_000)
            end = start + rng.randrange(1, 4000)
            if store.read(KEY, start, end) != data[start:end]:
                failures.append(f"[{start}, {end})")

    threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert sum(p.stat().st_size for p in cache_files(tmp_path / "cache")) <= store.capacity


_PROCESS = """
import random, sys
from pathlib import Path
from jobtail.blobs.cache import CachedBlobStore
from jobtail.blobs.local import LocalBlobStore
root, cache, key, seed = sys.argv[1:5]
store = CachedBlobStore(LocalBlobStore(Path(root)), Path(cache), 8 * 1012, block_bytes=1000)
data = (Path(root) / key).read_bytes()
rng = random.Random(int(seed))
bad = 0
for _ in range(1500):
    start = rng.randrange(0, len(data))
    end = start + rng.randrange(1, 4000)
    bad += store.read(key, start, end) != data[start:end]
print(bad)
"""


def test_two_processes_share_one_directory(tmp_path: Path) -> None:
    remote = LocalBlobStore(tmp_path / "remote")
    remote.put(KEY, [os.urandom(60_000)])
    cache = tmp_path / "cache"
    procs = [
        subprocess.Popen([sys.executable, "-c", _PROCESS, str(tmp_path / "remote"), str(cache), KEY, str(seed)],
                         stdout=subprocess.PIPE, text=True)
        for seed in (1, 2)
    ]
    results = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert results == ["0", "0"]
    assert sum(p.stat().st_size for p in cache_files(cache)) <= 8 * 1012
    assert not list(cache.glob("*.tmp"))


def test_only_remote_stores_are_cached(s3_blob_url: str, tmp_path: Path) -> None:
    local = open_cached_blobs((tmp_path / "b").as_uri(), tmp_path / "c", 10**9)
    assert not isinstance(local, CachedBlobStore)
    local.close()
    off = open_cached_blobs(s3_blob_url, tmp_path / "c", 0)
    assert not isinstance(off, CachedBlobStore)
    off.close()
    on = open_cached_blobs(s3_blob_url, tmp_path / "c", 10**9)
    assert isinstance(on, CachedBlobStore)
    on.close()


def test_seaweedfs_behind_the_cache(s3_blob_url: str, tmp_path: Path) -> None:
    data = os.urandom(3 * BLOCK_BYTES + 12345)
    s3 = open_blobs(s3_blob_url)
    try:
        s3.put(KEY, [data])
        remote = Counting(s3)
        store = CachedBlobStore(remote, tmp_path / "cache", 10**9, namespace=s3_blob_url)
        tail = len(data) - 2 * BLOCK_BYTES
        assert store.read(KEY, tail, len(data)) == data[tail:]
        assert store.read(KEY, tail, len(data)) == data[tail:]
        assert store.read(KEY, 0, len(data) + 10) == data
        assert remote.reads == 2
        assert store.read(KEY, 5, 17) == data[5:17]
        assert remote.reads == 2
    finally:
        s3.close()


def test_a_finished_logs_preview_comes_from_the_cache_once_read(s3_blob_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", blob_url=s3_blob_url, preview_cache_bytes=0)
    body = b"".join(b"step %07d loss 0.5\n" % i for i in range(400_000))  # ~8 MiB: one segment
    with open_jobs(settings) as (jobs, store):
        job = create_job(jobs, "proj-1", "cached")
        ref = TaskRef("proj-1", job.id, "worker-0")
        store.append(ref, body)
        store.seal(ref)
        state = store.state(ref)
        assert state.sealed_offset == len(body)
        first = store.preview(state)
        assert first.content.encode() == body[-first.current_size:]
        assert cache_files(settings.data_dir / "segment-cache")
        s3 = open_blobs(s3_blob_url)
        try:  # the preview no longer needs S3 at all
            for blob in list(s3.list("jobs/")):
                s3.delete(blob.key)
        finally:
            s3.close()
        assert store.preview(state) == first
