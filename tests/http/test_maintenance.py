"""The engine's background maintenance in a running server (`jobtail.core.maintenance`): sweeps
while it runs, and failures reported once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.engine import backends_of, new_job
from support.filesystems import fill, tmpfs
from support.live import LiveServer, serving_sqlite
from support.sdk import PROJECT
from support.sealing import kill_a_seal, temporaries

from jobtail.core.errors import StorageFull
from jobtail.core.maintenance import MAINTENANCE_INTERVAL, FailureLog
from jobtail.core.types import TaskRef


def test_leftovers_of_an_interrupted_seal_are_swept_while_the_server_runs(
    live_factory: Callable[..., LiveServer], meta_url: str, tmp_path: Path
) -> None:
    """Not only at the next start: the periodic sweep removes them once older than
    orphan_grace_seconds, even for a log that is never sealed again."""
    live = live_factory(orphan_grace_seconds=1.0)
    ref = TaskRef(PROJECT, new_job(live.store, PROJECT, "swept").id, "worker-0")
    live.store.append(ref, b"step 1\n" * 10_000)
    leftover = kill_a_seal(meta_url, tmp_path / "blobs", ref)
    deadline = time.monotonic() + 30
    while leftover.exists():
        assert time.monotonic() < deadline, "the leftover of the interrupted seal was not swept"
        time.sleep(0.1)
    assert temporaries(tmp_path / "blobs") == []
    with live.client() as http:
        preview = http.get(f"/v2/{PROJECT}/training-jobs/{ref.job_id}/tasks/worker-0/logs/preview").json()
    assert preview["full_size"] == 70_000


def test_a_full_segment_store_is_reported_once_and_seals_resume_when_space_is_freed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Seals write blobs: with their disk full, appends are still acknowledged (the head, in the
    database, keeps them), the maintenance thread says so once rather than with a traceback every
    round, and the head is sealed as soon as space is freed."""
    caplog.set_level(logging.INFO, logger="jobtail")
    with tmpfs(tmp_path / "segments", "4m") as segments, serving_sqlite(tmp_path, tmp_path / "jobtail.db",
                                                                  segments / "blobs", seal_idle_seconds=0.2) as live:
        ref = TaskRef(PROJECT, new_job(live.store, PROJECT, "segments-full").id, "worker-0")
        (segments / "blobs").mkdir(exist_ok=True)
        ballast = fill(segments)
        expected = b""
        with live.client() as http:
            for i in range(24):  # 1.5 MiB, past seal_bytes several times: seals are due after appends
                data = (f"{i:04d} ".encode() + b"x" * 1000 + b"\n") * 64
                r = http.post(f"/v2/{PROJECT}/training-jobs/{ref.job_id}/tasks/worker-0/logs", content=data)
                assert r.status_code == 200, r.text
                expected += data
        log_id = live.store.state(ref).log_id
        time.sleep(4 * MAINTENANCE_INTERVAL)  # a few maintenance rounds, each trying to seal
        assert backends_of(live.store).logs.segments(log_id) == []
        assert not list(segments.rglob("*.tmp")), "a failed seal leaves no partial blob"
        reports = [r for r in caplog.records if r.name.startswith("jobtail")]
        assert [(r.levelno, r.getMessage()) for r in reports] == [(logging.WARNING, (
            "sealing idle heads failed: Insufficient storage: no space left on the log store (segment store); "
            "nothing of this request was stored. Retry once the operator has freed space. (retrying)"))]
        assert not any(r.exc_info for r in caplog.records), "no traceback"
        ballast.unlink()
        deadline = time.monotonic() + 30
        while live.store.state(ref).head_bytes:
            assert time.monotonic() < deadline, "the head was not sealed once space was freed"
            time.sleep(0.1)
        assert b"".join(live.store.read(live.store.state(ref), 0, 1 << 40)) == expected
        while not any("works again" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "recovery was not reported"
            time.sleep(0.1)
        assert "sealing idle heads works again, after " in caplog.records[-1].getMessage()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_failure_that_persists_is_reported_with_a_backoff_and_a_new_kind_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="jobtail.test")
    clock = Clock()
    failures = FailureLog(logging.getLogger("jobtail.test"), clock)

    def full() -> None:
        raise StorageFull("database")

    for _ in range(31 * 60 + 1):  # half an hour of tries, one a second
        failures.run("sealing", full)
        clock.now += 1
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 + 5  # at once, then 1, 3, 7, 15 and 31 minutes later (the gaps double)
    assert lines[0].startswith("sealing failed: Insufficient storage: no space left on the log store (database)")
    assert lines[1].startswith("sealing still failing: 61 times in 60 s: Insufficient storage")
    assert lines[5].startswith("sealing still failing: 1861 times in 1860 s:")
    caplog.clear()

    def broken() -> None:
        raise RuntimeError("something else")

    failures.run("sealing", broken)  # another kind: reported at once, with its traceback
    failures.run("sealing", broken)
    failures.run("retention", full)
    failures.run("sealing", lambda: None)
    assert [(r.levelno, r.getMessage(), bool(r.exc_info)) for r in caplog.records] == [
        (logging.ERROR, "sealing failed: RuntimeError: something else (retrying)", True),
        (logging.WARNING, "retention failed: Insufficient storage: no space left on the log store (database); "
                          "nothing of this request was stored. Retry once the operator has freed space. (retrying)",
         False),
        (logging.INFO, "sealing works again, after 2 failure(s)", False),
    ]
