"""The S3 backend beyond the conformance suite: a whole LogStore on SQLite + S3, multipart
uploads, and the URL form. Runs against the session's SeaweedFS server (`s3_blob_url`)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.engine import backends_of, new_job, open_engine

from jobtail.blobs.registry import open_blobs
from jobtail.blobs.s3 import S3BlobStore, open_s3
from jobtail.core.blob_store import BlobNotFound
from jobtail.core.types import TaskRef

MiB = 1024 * 1024


class Boom(Exception):
    pass


def test_logstore_on_sqlite_and_s3(s3_blob_url: str, tmp_path: Path) -> None:
    store = open_engine(f"sqlite:///{tmp_path / 'meta.db'}", s3_blob_url, seal_bytes=4096, segment_bytes=8192,
                        preview_bytes=10_000).store
    try:
        job = new_job(store, "proj-1", "s3-job", node_count=1)
        ref = TaskRef("proj-1", job.id, "worker-0")
        lines = [f"step {i:05d} loss {1 / (i + 1):.6f}\n".encode() for i in range(2000)]
        expected = b"".join(lines)
        arrived = []
        for i in range(0, len(lines), 100):  # full heads are sealed in the background
            arrived.append((len(b"".join(lines[:i])), 1_700_000_000.0 + i / 100 + 0.123456))
            store.append(ref, b"".join(lines[i : i + 100]), arrived_at=arrived[-1][1])
        store.seal(ref)
        state = store.state(ref)
        # every append's arrival time, to the microsecond, from the segments' trailers in S3
        assert store.arrival_times(state, [offset for offset, _ in arrived]) == [at for _, at in arrived]
        assert state.end_offset == len(expected)
        segments = backends_of(store).logs.segments(state.log_id)
        assert len(segments) >= len(expected) // 8192
        assert [b.key for b in backends_of(store).blobs.list("jobs/")] == [s.blob_key for s in segments]

        assert b"".join(store.read(store.state(ref), 0, len(expected))) == expected
        for start, end in [(0, 1), (8191, 8193), (12_345, 40_000), (len(expected) - 7, len(expected) + 100)]:
            assert b"".join(store.read(store.state(ref), start, end)) == expected[start:end]

        preview = store.preview(store.state(ref))
        assert preview.full_size == len(expected)
        assert 0 < preview.current_size <= 10_000
        assert preview.content.encode() == expected[-preview.current_size :]
        assert preview.content.startswith("step ")

        # an orphan (a sealer died between the blob and its record) is swept; recorded ones stay
        orphan = f"jobs/{job.id}/worker-0/99999999999999999999-99999999999999999999.seg"
        backends_of(store).blobs.put(orphan, [b"orphan"])
        assert store.sweep_orphans(grace_seconds=3600) == [], "too young to sweep"
        assert store.sweep_orphans(grace_seconds=-60) == [orphan]
        with pytest.raises(BlobNotFound):
            backends_of(store).blobs.read(orphan, 0, 10)
        assert b"".join(store.read(store.state(ref), 0, len(expected))) == expected
    finally:
        store.close()


@pytest.fixture
def small_parts(s3_blob_url: str) -> Iterator[S3BlobStore]:
    store = open_s3(s3_blob_url)
    store.part_bytes = 5 * MiB  # the S3 minimum, so a multipart upload needs only ~11 MiB
    try:
        yield store
    finally:
        store.close()


def test_multipart_put_streams_parts_and_an_interrupted_one_leaves_nothing(small_parts: S3BlobStore) -> None:
    chunk = os.urandom(256 * 1024)
    count = 45  # 11.25 MiB: two full parts and a short last one
    assert small_parts.put("jobs/big", (chunk for _ in range(count))) == count * len(chunk)
    size = count * len(chunk)
    assert [(b.key, b.size) for b in small_parts.list("")] == [("jobs/big", size)]
    assert small_parts.read("jobs/big", 5 * MiB - 3, 5 * MiB + 3) == (chunk * 21)[5 * MiB - 3 : 5 * MiB + 3]
    assert small_parts.read("jobs/big", size - 5, size + 5) == chunk[-5:]

    def failing() -> Iterator[bytes]:
        for _ in range(30):  # past the first part, so a multipart upload is under way
            yield chunk
        raise Boom("writer died")

    with pytest.raises(Boom):
        small_parts.put("jobs/new", failing())
    with pytest.raises(Boom):
        small_parts.put("jobs/big", failing())
    with pytest.raises(BlobNotFound):
        small_parts.read("jobs/new", 0, 10)
    assert [(b.key, b.size) for b in small_parts.list("")] == [("jobs/big", size)]
    assert small_parts.read("jobs/big", 0, 4) == chunk[:4], "the interrupted overwrite changed nothing"
    uploads = small_parts.client.list_multipart_uploads(Bucket=small_parts.bucket, Prefix=small_parts.prefix)
    assert uploads.get("Uploads", []) == [], "the failed uploads were aborted"


def test_sweep_partial_aborts_multipart_uploads_a_dead_writer_left(small_parts: S3BlobStore) -> None:
    """A sealer killed mid-upload leaves an unfinished multipart upload: invisible, but its parts
    take space. The periodic sweep aborts it once it is older than the grace period."""
    client, bucket = small_parts.client, small_parts.bucket
    left = []
    for key in ("jobs/job-1/worker-0/0.seg", "jobs/job-2/worker-0/0.seg"):
        name = small_parts.prefix + key
        upload = client.create_multipart_upload(Bucket=bucket, Key=name)["UploadId"]
        client.upload_part(Bucket=bucket, Key=name, UploadId=upload, PartNumber=1, Body=b"x" * 1024)
        left.append(upload)

    def unfinished() -> set[str]:
        found = client.list_multipart_uploads(Bucket=bucket, Prefix=small_parts.prefix).get("Uploads", [])
        return {u["UploadId"] for u in found}

    assert unfinished() == set(left)
    assert small_parts.sweep_partial("jobs/", time.time() - 3600) == [], "too young"
    assert small_parts.sweep_partial("jobs/job-1/", time.time() + 60) == [f"jobs/job-1/worker-0/0.seg (upload {left[0]})"]
    assert unfinished() == {left[1]}
    assert small_parts.sweep_partial("", time.time() + 60) == [f"jobs/job-2/worker-0/0.seg (upload {left[1]})"]
    assert unfinished() == set()
    assert list(small_parts.list("")) == []


def test_url_form() -> None:
    pytest.importorskip("boto3")
    store = open_s3("s3://bucket/some/prefix/?endpoint=http://127.0.0.1:1&region=eu-west-1")
    try:
        assert (store.bucket, store.prefix) == ("bucket", "some/prefix/")
        assert store.client.meta.endpoint_url == "http://127.0.0.1:1"
        assert store.client.meta.region_name == "eu-west-1"
    finally:
        store.close()
    with pytest.raises(ValueError, match="bucket"):
        open_blobs("s3:///prefix")
    with pytest.raises(ValueError, match="unknown"):
        open_blobs("s3://bucket/p?endpiont=http://x")
