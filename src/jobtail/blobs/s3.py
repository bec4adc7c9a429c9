"""S3 blob backend: any S3-compatible object store (AWS S3, Huawei OBS, MinIO, SeaweedFS, Ceph).

URL form::

    s3://BUCKET[/PREFIX][?endpoint=http://host:port][&region=us-east-1][&addressing_style=path|virtual|auto]

- ``BUCKET`` must exist; objects are stored under ``PREFIX/`` (a trailing ``/`` is added when
  missing), so several stores can share a bucket.
- ``endpoint``: the S3 API endpoint; omit it for AWS S3. With an endpoint, path-style addressing
  is the default (what MinIO, SeaweedFS and Ceph expect); ``addressing_style`` overrides it.
- ``region``: the signing region (``AWS_REGION`` / ``AWS_DEFAULT_REGION`` / ``us-east-1`` otherwise).
- Credentials come from boto3's standard chain: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``
  (/ ``AWS_SESSION_TOKEN``), ``AWS_PROFILE`` and the shared config files, or an instance role.
  They never appear in the URL.

Objects are atomic on completion: small objects are a single PutObject; larger ones stream as a
multipart upload in ``part_bytes`` parts (memory bounded by one part), aborted on any failure so
no partial object ever becomes visible. Only this module imports boto3 (the ``s3`` extra).
"""

from __future__ import annotations

import builtins  # `list` is a method name below
import contextlib
import os
import threading
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

from jobtail.core.blob_store import BlobInfo, BlobNotFound, s3_bucket_and_prefix

PART_BYTES = 8 * 1024 * 1024  # S3 requires >= 5 MiB for every part but the last
_MISSING = {"NoSuchKey", "404", "NotFound"}


class S3BlobStore:
    def __init__(self, client: Any, bucket: str, prefix: str = "", part_bytes: int = PART_BYTES) -> None:
        if part_bytes < 5 * 1024 * 1024:
            raise ValueError("part_bytes must be at least 5 MiB (the S3 minimum part size)")
        self.client, self.bucket, self.prefix, self.part_bytes = client, bucket, prefix, part_bytes
        self._closed = False

    def _key(self, key: str) -> str:
        if not key:
            raise ValueError("invalid blob key ''")
        return self.prefix + key

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        name = self._key(key)
        buffer = bytearray()
        iterator = iter(chunks)
        for chunk in iterator:
            buffer += chunk
            if len(buffer) >= self.part_bytes:
                return self._put_multipart(name, buffer, iterator)
        self.client.put_object(Bucket=self.bucket, Key=name, Body=bytes(buffer))
        return len(buffer)

    def _put_multipart(self, name: str, buffer: bytearray, rest: Iterator[bytes]) -> int:
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=name)["UploadId"]
        parts: list[dict[str, Any]] = []
        size = 0

        def send(data: bytes) -> None:
            number = len(parts) + 1
            response = self.client.upload_part(
                Bucket=self.bucket, Key=name, UploadId=upload_id, PartNumber=number, Body=data
            )
            parts.append({"ETag": response["ETag"], "PartNumber": number})

        try:
            while True:
                while len(buffer) >= self.part_bytes:
                    send(bytes(buffer[: self.part_bytes]))
                    size += self.part_bytes
                    del buffer[: self.part_bytes]
                chunk = next(rest, None)
                if chunk is None:
                    break
                buffer += chunk
            if buffer or not parts:
                send(bytes(buffer))
                size += len(buffer)
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=name, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            # The original error matters more; a failed abort leaves only invisible parts, which
            # `list_multipart_uploads` shows and a bucket lifecycle rule removes.
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
            raise
        return size

    def read(self, key: str, start: int, end: int) -> bytes:
        from botocore.exceptions import ClientError

        name = self._key(key)
        start = max(start, 0)
        try:
            if end <= start:  # an empty range still reports a missing key
                self.client.head_object(Bucket=self.bucket, Key=name)
                return b""
            response = self.client.get_object(Bucket=self.bucket, Key=name, Range=f"bytes={start}-{end - 1}")
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _MISSING or status == 404:
                raise BlobNotFound(key) from None
            if code == "InvalidRange" or status == 416:  # start at or past the end of the object
                return b""
            raise
        body = response["Body"]
        try:
            data: bytes = body.read()
        finally:
            body.close()
        if response.get("ContentRange") is None and len(data) > end - start:
            data = data[start:end]  # a server that ignored the Range header sent the whole object
        return data

    def delete(self, key: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) not in _MISSING:
                raise

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        # AWS S3 lists in key (UTF-8 byte = code point) order, but directory-backed servers
        # (SeaweedFS) list depth-first, putting `a/x` before `a-b/x`; so, like the local
        # backend, collect the (paginated) listing and sort it.
        paginator = self.client.get_paginator("list_objects_v2")
        strip = len(self.prefix)
        found = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for item in page.get("Contents", ()):
                key = item["Key"]
                if key.endswith("/") and item["Size"] == 0:
                    continue  # a "directory marker" some servers list; never one of our keys
                found.append(BlobInfo(key[strip:], int(item["Size"]), item["LastModified"].timestamp()))
        found.sort(key=lambda b: b.key)
        yield from found

    def sweep_partial(self, prefix: str, older_than: float) -> builtins.list[str]:
        """Abort the multipart uploads under `prefix` initiated before `older_than`: a writer
        killed mid-upload leaves its parts stored (and billed) though invisible."""
        paginator = self.client.get_paginator("list_multipart_uploads")
        strip = len(self.prefix)
        aborted = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for upload in page.get("Uploads", ()):
                if upload["Initiated"].timestamp() < older_than:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                       UploadId=upload["UploadId"])
                    aborted.append(f"{upload['Key'][strip:]} (upload {upload['UploadId']})")
        return aborted

    def adopt(self, key: str, path: str) -> bool:
        return False  # an upload is a copy anyway: the caller puts the bytes

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            close = getattr(self.client, "close", None)
            if close is not None:
                close()


def open_s3(url: str) -> S3BlobStore:
    """Open ``s3://BUCKET/PREFIX?endpoint=...&region=...`` (see the module docstring)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ValueError("s3:// blob URLs need boto3: pip install 'jobtail[s3]'") from None
    bucket, prefix = s3_bucket_and_prefix(url)
    query = {k: v[-1] for k, v in parse_qs(urlparse(url).query).items()}
    unknown = set(query) - {"endpoint", "region", "addressing_style"}
    if unknown:
        raise ValueError(f"unknown S3 blob URL parameter(s) {sorted(unknown)} in {url!r}")
    endpoint = query.get("endpoint") or None
    region = query.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    style = query.get("addressing_style") or ("path" if endpoint else "auto")
    if style not in ("path", "virtual", "auto"):
        raise ValueError(f"addressing_style must be path, virtual or auto, not {style!r}")
    config = Config(s3={"addressing_style": style},  # type: ignore[arg-type]  # a literal the stubs cannot see
                    retries={"max_attempts": 5, "mode": "standard"})
    client = _session(boto3).client("s3", endpoint_url=endpoint, region_name=region, config=config)
    return S3BlobStore(client, bucket, prefix)


_loader: Any = None
_loader_lock = threading.Lock()


def _session(boto3: Any) -> Any:
    """A fresh boto3 session (credentials resolved anew) sharing one loader of the service
    models, which makes every client after the first ~5x cheaper to create."""
    import botocore.session

    global _loader
    core = botocore.session.get_session()
    with _loader_lock:
        if _loader is None:
            _loader = core.get_component("data_loader")
        else:
            core.register_component("data_loader", _loader)
    return boto3.session.Session(botocore_session=core)
