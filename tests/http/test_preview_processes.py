"""Two `jobtail serve` processes on one database: a preview one of them caches never outlives an
append acknowledged by the other (the single-flight cache and the event-loop path included)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.serve import ServeProcess, jobtail

from jobtail.client import Client, Credentials


@pytest.fixture
def two_servers(meta_url: str, tmp_path: Path) -> Iterator[tuple[ServeProcess, ServeProcess]]:
    """Two servers on one metadata database (each backend) and one blob directory."""
    shared = ("--database-url", meta_url, "--blob-url", (tmp_path / "blobs").as_uri(), "--rate-limit-per-second", "0",
              "--seal-bytes", "4096")
    first = ServeProcess(tmp_path / "data", *shared)
    second = ServeProcess(tmp_path / "data", *shared)
    try:
        first.start()  # the first start bootstraps the project and writes credentials.json
        second.start()
        yield first, second
    finally:
        first.kill()
        second.kill()


def test_a_preview_cached_in_one_process_follows_appends_through_another(
    two_servers: tuple[ServeProcess, ServeProcess],
) -> None:
    reader_server, writer_server = two_servers
    project = reader_server.project()
    env_args = ["--data-dir", str(reader_server.data_dir)]
    job_id = jobtail("admin", "job", "create", "--project", project, "--name", "two", *env_args,
                     *reader_server.options[:2]).strip()
    credentials = Credentials.load(reader_server.admin_credentials())
    path = f"/v2/{project}/training-jobs/{job_id}/tasks/worker-0/logs"
    log = b""
    with Client(reader_server.url, credentials=credentials) as reader, \
            Client(writer_server.url, credentials=credentials) as writer:
        etag = None
        for i in range(40):
            line = f"step {i:04d} loss=0.{i:04d}\n".encode()
            answer = writer.request("POST", path, params={"offset": len(log)}, content=line,
                                    headers={"Content-Type": "application/octet-stream"})
            assert answer.status_code == 200, answer.text
            log += line
            headers = {"If-None-Match": etag} if etag else {}
            preview = reader.request("GET", path + "/preview", headers=headers)
            assert preview.status_code == 200, (i, preview.status_code)  # the old tag is stale: never a 304
            assert preview.json() == {"content": log.decode(), "current_size": len(log), "full_size": len(log)}
            etag = preview.headers["ETag"]
            again = reader.request("GET", path + "/preview")  # now cached in (one of) the reader's worker(s)
            assert again.content == preview.content
            assert reader.request("GET", path + "/preview", headers={"If-None-Match": etag}).status_code == 304


def test_concurrent_previews_of_a_growing_log_are_never_older_than_the_last_acknowledged_append(
    two_servers: tuple[ServeProcess, ServeProcess],
) -> None:
    reader_server, writer_server = two_servers
    project = reader_server.project()
    job_id = jobtail("admin", "job", "create", "--project", project, "--name", "grow", "--data-dir",
                     str(reader_server.data_dir), *reader_server.options[:2]).strip()
    credentials = Credentials.load(reader_server.admin_credentials())
    path = f"/v2/{project}/training-jobs/{job_id}/tasks/worker-0/logs"
    acknowledged = [0]  # the end offset of the last append the writer saw acknowledged
    done = threading.Event()
    failures: list[str] = []

    reads = [0] * 4

    def read(number: int) -> None:
        try:
            with Client(reader_server.url, credentials=credentials) as reader:
                while not done.is_set():
                    floor = acknowledged[0]  # read before the request starts: the preview must cover it
                    answer = reader.request("GET", path + "/preview")
                    body = answer.json()
                    if answer.status_code != 200 or body["full_size"] < floor:
                        failures.append(f"{answer.status_code} {body.get('full_size')} < {floor}")
                        return
                    reads[number] += 1
        except Exception as exc:  # a reader that dies must fail the test, not end quietly
            failures.append(repr(exc))

    writer = Client(writer_server.url, credentials=credentials)
    first = writer.request("POST", path, content=b"start\n", headers={"Content-Type": "application/octet-stream"})
    assert first.status_code == 200, first.text
    acknowledged[0] = first.json()["full_size"]
    readers = [threading.Thread(target=read, args=(number,)) for number in range(4)]
    for thread in readers:
        thread.start()
    try:
        with writer:
            for i in range(150):
                line = (f"{i:05d} " + "x" * 200 + "\n").encode()
                answer = writer.request("POST", path, content=line, headers={"Content-Type": "application/octet-stream"})
                assert answer.status_code == 200, answer.text
                acknowledged[0] = answer.json()["full_size"]
    finally:
        done.set()
        for thread in readers:
            thread.join(timeout=60)
    assert not failures, failures
    assert not any(thread.is_alive() for thread in readers)
    assert all(reads), reads  # every reader read previews while the log grew
    with httpx.Client() as plain:
        assert plain.get(reader_server.url + "/healthz").status_code == 200
