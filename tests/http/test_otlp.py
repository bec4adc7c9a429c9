"""OTLP/HTTP logs (`POST /v1/logs`) with the real OpenTelemetry SDK and its OTLP/HTTP exporter."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from support.identity import SecureServer

from jobtail.core.types import TaskRef
from jobtail.http import otlp

UNKNOWN_JOB = "2cd88daa-31a4-40a8-a58f-d186b0e93e4f"


def records(resource: dict[str, str], *bodies: Any) -> Sequence[ReadableLogRecord]:
    """Log records as the SDK makes them, with `resource` (the exporter then sends them)."""
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create(resource))
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("train")
    for body in bodies:
        logger.emit(body=body, severity_text="INFO", severity_number=SeverityNumber.INFO)
    return memory.get_finished_logs()


def stored(secure: SecureServer, task: str, job_id: str | None = None) -> bytes:
    ref = TaskRef(secure.project, job_id or secure.job_id, task)
    return b"".join(secure.live.store.read(secure.live.store.state(ref), 0, 1 << 62))


def exporter(secure: SecureServer, token: str, **options: object) -> OTLPLogExporter:
    return OTLPLogExporter(endpoint=secure.url + "/v1/logs", headers={"X-Auth-Token": token,
                                                                       "X-Project-Id": secure.project}, **options)


def test_the_real_exporter_ships_records_as_lines(secure: SecureServer) -> None:
    token = secure.token("ingest")
    worker0 = records({"jobtail.training_job_id": secure.job_id, "jobtail.task_id": "worker-0"},
                      "epoch 1 loss 0.9", "epoch 2 loss 0.5\n", "损失 0.1", {"step": 3, "loss": 0.25})
    worker1 = records({"k8s.pod.labels.jobtail.io/training-job-id": secure.job_id, "k8s.pod.name": "demo-worker-1"},
                      "from a Kubernetes pod")
    plain = exporter(secure, token)
    assert plain.export([*worker0, *worker1]) == LogRecordExportResult.SUCCESS
    zipped = exporter(secure, token, compression=Compression.Gzip)
    assert zipped.export(worker0[:1]) == LogRecordExportResult.SUCCESS
    plain.shutdown()
    zipped.shutdown()
    assert stored(secure, "worker-0") == ('epoch 1 loss 0.9\nepoch 2 loss 0.5\n损失 0.1\n{"step":3,"loss":0.25}\n'
                                          "epoch 1 loss 0.9\n").encode()
    assert stored(secure, "worker-1") == b"from a Kubernetes pod\n"


def test_json_encoding_and_the_response_shapes(secure: SecureServer) -> None:
    token = secure.token("ingest")
    batch = records({"jobtail.training_job_id": secure.job_id, "jobtail.task_id": "worker-1",
                     "jobtail.project_id": secure.project}, "json line")
    body = json_format.MessageToJson(encode_logs(batch)).encode()
    headers = {"X-Auth-Token": token, "Content-Type": "application/json"}  # project from the attribute
    r = httpx.post(secure.url + "/v1/logs", content=body, headers=headers)
    assert (r.status_code, r.headers["content-type"], r.json()) == (200, "application/json", {})
    r = httpx.post(secure.url + "/v1/logs", content=encode_logs(batch).SerializeToString(),
                   headers={**headers, "Content-Type": "application/x-protobuf", "Content-Encoding": "identity"})
    assert (r.status_code, r.headers["content-type"], r.content) == (200, "application/x-protobuf", b"")
    assert stored(secure, "worker-1") == b"json line\njson line\n"


def test_an_unknown_job_refuses_the_whole_request_and_stores_nothing(secure: SecureServer) -> None:
    token = secure.token("ingest")
    known = records({"jobtail.training_job_id": secure.job_id, "jobtail.task_id": "worker-0"}, "must not be stored")
    unknown = records({"jobtail.training_job_id": UNKNOWN_JOB, "jobtail.task_id": "worker-0"}, "nowhere")
    sender = exporter(secure, token)
    assert sender.export([*known, *unknown]) == LogRecordExportResult.FAILURE
    sender.shutdown()
    body = gzip.compress(encode_logs([*known, *unknown]).SerializeToString())
    r = httpx.post(secure.url + "/v1/logs", content=body, headers={
        "X-Auth-Token": token, "X-Project-Id": secure.project, "Content-Type": "application/x-protobuf",
        "Content-Encoding": "gzip"})
    assert (r.status_code, r.json()["error_code"]) == (400, "ModelArts.2775")
    assert r.json()["error_msg"] == f"Training job (ID: {UNKNOWN_JOB}) not found."
    assert stored(secure, "worker-0") == b""
    assert secure.live.store.state(TaskRef(secure.project, secure.job_id, "worker-0")).end_offset == 0


@pytest.mark.parametrize(("resource", "code", "param"), [
    ({"jobtail.task_id": "worker-0"}, "ModelArts.2788", "jobtail.training_job_id"),
    ({"jobtail.training_job_id": "JOB", "jobtail.task_id": "worker-9"}, "ModelArts.2788", "task_id"),
    ({"jobtail.training_job_id": "JOB", "jobtail.task_id": "worker-0", "jobtail.project_id": "other"},
     "ModelArts.2788", "jobtail.project_id"),
])
def test_records_that_name_no_task_of_the_project_are_refused(
    secure: SecureServer, resource: dict[str, str], code: str, param: str
) -> None:
    resource = {k: v.replace("JOB", secure.job_id) for k, v in resource.items()}
    body = encode_logs(records(resource, "x")).SerializeToString()
    r = httpx.post(secure.url + "/v1/logs", content=body, headers={
        "X-Auth-Token": secure.token("ingest"), "X-Project-Id": secure.project,
        "Content-Type": "application/x-protobuf"})
    assert (r.status_code, r.json()["error_code"]) == (400, code)
    assert f"({param})" in r.json()["error_msg"]


def test_bad_bodies_and_missing_projects_are_clear_errors(secure: SecureServer) -> None:
    token = secure.token("ingest")
    base = {"X-Auth-Token": token, "X-Project-Id": secure.project}
    cases = [
        ({**base, "Content-Type": "application/x-protobuf"}, b"\xff\xff not protobuf", "Invalid parameter(body)."),
        ({**base, "Content-Type": "text/plain"}, b"x", "Invalid parameter(Content-Type)."),
        ({**base, "Content-Type": "application/json", "Content-Encoding": "br"}, b"{}",
         "Invalid parameter(Content-Encoding)."),
        ({"X-Auth-Token": token, "Content-Type": "application/json"}, b"{}", "Invalid parameter(project_id)."),
    ]
    for headers, body, message in cases:
        r = httpx.post(secure.url + "/v1/logs", content=body, headers=headers)
        assert (r.status_code, r.json()["error_code"]) == (400, "ModelArts.2788"), r.text
        assert r.json()["error_msg"].startswith(message)
    r = httpx.post(secure.url + "/v1/logs", content=b"{}", headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()["error_code"]) == (401, "APIGW.0301")
    r = httpx.post(secure.url + "/v1/logs", content=b"{}", headers={
        "X-Auth-Token": secure.token("viewer"), "X-Project-Id": secure.project, "Content-Type": "application/json"})
    assert (r.status_code, r.json()["error_code"]) == (403, "ModelArts.0108")


def _post(secure: SecureServer, body: bytes, encoding: str = "gzip") -> httpx.Response:
    return httpx.post(secure.url + "/v1/logs", content=body, headers={
        "X-Auth-Token": secure.token("ingest"), "X-Project-Id": secure.project,
        "Content-Type": "application/x-protobuf", "Content-Encoding": encoding})


def test_a_multi_member_gzip_body_is_read_whole(secure: SecureServer) -> None:
    """RFC 1952: a gzip file may hold several members, its content is their concatenation (what
    `cat a.gz b.gz` makes, and what `gzip -d` reads). Here the protobuf is cut mid-record."""
    lines = [f"line {i} of a gzip member" for i in range(50)]
    message = encode_logs(records({"jobtail.training_job_id": secure.job_id, "jobtail.task_id": "worker-0"},
                                  *lines)).SerializeToString()
    cut = len(message) // 3
    body = gzip.compress(message[:cut]) + gzip.compress(b"") + gzip.compress(message[cut:])
    r = _post(secure, body)
    assert r.status_code == 200, r.text
    assert stored(secure, "worker-0") == "".join(f"{line}\n" for line in lines).encode()


def test_garbage_truncated_or_trailing_compressed_bodies_are_refused(secure: SecureServer) -> None:
    message = encode_logs(records({"jobtail.training_job_id": secure.job_id, "jobtail.task_id": "worker-0"},
                                  "must not be stored")).SerializeToString()
    zipped = gzip.compress(message)
    for body, encoding in [
        (b"\x1f\x8b\x08\x00garbage", "gzip"),  # a gzip header, then nothing that inflates to an end
        (zipped[:-4], "gzip"),  # the trailer cut off
        (zipped[: len(zipped) // 2], "gzip"),
        (zipped + b"\x00\x00\x00\x00", "gzip"),  # zero padding after the last member
        (zipped + b"garbage", "gzip"),
        (zipped + zipped[:12], "gzip"),  # a second member cut short
        (b"", "gzip"),
        (b"plain bytes", "gzip"),
        (zlib.compress(message) + b"x", "deflate"),
        (zlib.compress(message) + zlib.compress(message), "deflate"),  # one zlib stream per body
        (zlib.compress(message)[:-2], "deflate"),
    ]:
        r = _post(secure, body, encoding)
        assert (r.status_code, r.json()["error_code"]) == (400, "ModelArts.2788"), (body[:16], r.text)
        assert r.json()["error_msg"].startswith("Invalid parameter(body).")
        assert r.json()["request_id"]
    assert stored(secure, "worker-0") == b""
    assert _post(secure, zlib.compress(message), "deflate").status_code == 200
    assert stored(secure, "worker-0") == b"must not be stored\n"


def test_a_body_that_inflates_past_the_limit_is_refused_whatever_its_members(secure: SecureServer) -> None:
    limit = secure.live.settings.max_body_bytes
    half = gzip.compress(b"\0" * (limit // 2 + 1))  # two of them inflate to just over the limit
    for body in (gzip.compress(b"\0" * (limit + 1)), half + half, gzip.compress(b"") * 3 + half + half):
        assert len(body) < limit // 100  # a bomb: small on the wire
        r = _post(secure, body)
        assert (r.status_code, r.json()["error_code"]) == (413, "APIGW.0201"), r.text
    assert stored(secure, "worker-0") == b""


def test_bgzip_style_blocks_are_read_and_a_flood_of_members_is_refused(secure: SecureServer) -> None:
    lines = [f"block line {i:05d}" for i in range(2000)]
    message = encode_logs(records({"jobtail.training_job_id": secure.job_id, "jobtail.task_id": "worker-1"},
                                  *lines)).SerializeToString()
    blocks = [gzip.compress(message[i : i + 1024]) for i in range(0, len(message), 1024)]  # like bgzip's blocks
    assert 32 < len(blocks) <= otlp.MAX_GZIP_MEMBERS
    assert _post(secure, b"".join(blocks)).status_code == 200
    assert stored(secure, "worker-1") == "".join(f"{line}\n" for line in lines).encode()
    flood = gzip.compress(b"") * (otlp.MAX_GZIP_MEMBERS + 1)
    r = _post(secure, flood)
    assert (r.status_code, r.json()["error_code"]) == (400, "ModelArts.2788")
    assert f"more than {otlp.MAX_GZIP_MEMBERS} gzip members" in r.json()["error_msg"]
