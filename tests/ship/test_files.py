"""Shipping a file: resuming from the server's end, rotation (rename-and-create, copy-truncate),
and what a restarted shipper does with a file that changed while it was away."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.serve import IngestServer

from jobtail.client import Client
from jobtail.ship import state as statefile
from jobtail.ship.backoff import Backoff
from jobtail.ship.files import FileShipper, Pacing
from jobtail.ship.uplink import ShipFailed, Uplink

FAST = Pacing(batch_bytes=64 * 1024, batch_seconds=0.05, poll_seconds=0.02, settle_seconds=0.3)


_clients: list[Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def shipper(ingest: IngestServer, path: Path, follow: bool = False) -> FileShipper:
    client = ingest.client()
    _clients.append(client)
    uplink = Uplink(client, ingest.job_id, "worker-0", backoff=Backoff(cap=0.05), stop=threading.Event())
    return FileShipper(uplink, path, follow=follow, pacing=FAST)


@contextmanager
def following(ingest: IngestServer, path: Path) -> Iterator[FileShipper]:
    ship = shipper(ingest, path, follow=True)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            ship.run()
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield ship
    finally:
        ship.stop.set()
        thread.join(timeout=10)
    assert not failures, failures


def eventually(check: Callable[[], bool], what: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what() if callable(what) else what
        time.sleep(0.02)


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def test_a_file_is_shipped_once_and_a_restart_sends_only_what_is_new(ingest: IngestServer, tmp_path: Path) -> None:
    with ingest.client() as client:  # bytes already in the log: the file goes after them
        client.json("POST", f"/v2/{ingest.project}/training-jobs/{ingest.job_id}/tasks/worker-0/logs",
                    content=b"earlier\n")
    path = tmp_path / "train.log"
    data = os.urandom(300_000)
    path.write_bytes(data)
    assert shipper(ingest, path).run() == 8 + len(data)
    saved = statefile.load(statefile.default_state_path(path))
    assert saved is not None and (saved.base, saved.shipped) == (8, len(data))
    assert shipper(ingest, path).run() == 8 + len(data)  # nothing new: nothing sent
    append(path, b"more\n")
    shipper(ingest, path).run()
    assert ingest.log() == b"earlier\n" + data + b"more\n"


def test_the_server_ahead_of_the_state_file_is_believed(ingest: IngestServer, tmp_path: Path) -> None:
    path = tmp_path / "train.log"
    path.write_bytes(b"a" * 1000 + b"b" * 1000)
    shipper(ingest, path).run()
    state_path = statefile.default_state_path(path)
    saved = statefile.load(state_path)
    assert saved is not None
    # A shipper killed after the server acknowledged but before it saved: the state lags behind.
    statefile.save(state_path, dataclasses.replace(saved, shipped=10))
    shipper(ingest, path).run()
    assert ingest.log() == b"a" * 1000 + b"b" * 1000


def test_rename_and_create_rotation_is_followed(ingest: IngestServer, tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"old 1\n")
    with following(ingest, path):
        eventually(lambda: ingest.log() == b"old 1\n", "the first line")
        with open(path, "ab") as writer:
            writer.write(b"old 2\n")
            path.rename(tmp_path / "app.log.1")
            path.write_bytes(b"new 1\n")
            writer.write(b"old 3, written after the rename\n")  # the writer has not reopened yet
        eventually(lambda: ingest.log() == b"old 1\nold 2\nold 3, written after the rename\nnew 1\n", "rotation")
        append(path, b"new 2\n")
        eventually(lambda: ingest.log().endswith(b"new 1\nnew 2\n"), "the new file's growth")


def test_copy_truncate_rotation_is_followed(ingest: IngestServer, tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"first generation\n")
    with following(ingest, path):
        eventually(lambda: ingest.log() == b"first generation\n", "the first generation")
        with open(path, "r+b") as f:  # copytruncate: the copy goes elsewhere, the file restarts
            f.truncate(0)
        append(path, b"second\n")
        eventually(lambda: ingest.log() == b"first generation\nsecond\n", "a shorter second generation")
        with open(path, "r+b") as f:  # truncated and rewritten past the old length between two looks
            f.truncate(0)
            f.write(b"THIRD generation, longer than the second one\n")
        eventually(lambda: ingest.log().endswith(b"second\nTHIRD generation, longer than the second one\n"),
                   lambda: ingest.log())


def test_a_restarted_shipper_finishes_a_file_rotated_while_it_was_away(ingest: IngestServer, tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"before\n")
    shipper(ingest, path).run()
    append(path, b"unsent tail\n")
    path.rename(tmp_path / "app.log.1")
    path.write_bytes(b"after rotation\n")
    shipper(ingest, path).run()
    assert ingest.log() == b"before\nunsent tail\nafter rotation\n"
    path.write_bytes(b"rewritten while away\n")  # same inode, other bytes: shipped again from its start
    shipper(ingest, path).run()
    assert ingest.log() == b"before\nunsent tail\nafter rotation\nrewritten while away\n"


def test_another_writers_bytes_stop_the_shipper(ingest: IngestServer, tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"mine\n")
    ship = shipper(ingest, path)
    ship._resume()  # the mapping is saved: the file starts at log offset 0
    with ingest.client() as client:
        client.json("POST", f"/v2/{ingest.project}/training-jobs/{ingest.job_id}/tasks/worker-0/logs",
                    params={"offset": 0}, content=b"THEIRS\n")
    with pytest.raises(ShipFailed, match="other bytes at offset 0"):
        ship._copy(follow=False)
    assert ship.current is not None
    os.close(ship.current.fd)
    assert ingest.log() == b"THEIRS\n"
