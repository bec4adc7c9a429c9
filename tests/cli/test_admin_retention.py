"""`jobtail admin retention [--dry-run]` drops old sealed segments of the store `serve` opens."""

from __future__ import annotations

import time
from pathlib import Path

from click.testing import CliRunner
from support.engine import backends_of, new_job, open_engine

from jobtail.cli import main
from jobtail.core.types import TaskRef
from jobtail.settings import Settings
from jobtail.wiring import open_store


def test_admin_retention(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    tmp_path.mkdir(exist_ok=True)
    long_ago = time.time() - 40 * 86_400
    old = open_engine(settings.database_url, settings.blob_url, clock=lambda: long_ago).store
    try:
        job = new_job(old, "p1", "old")
        ref = TaskRef("p1", job.id, "worker-0")
        old.append(ref, b"forty days ago\n")
        old.seal(ref)
    finally:
        old.close()
    runner = CliRunner()
    args = ["admin", "retention", "--data-dir", str(tmp_path)]
    dry = runner.invoke(main, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"{job.id}/worker-0: would drop 1 segment(s), 15 bytes; starts at 15 (cleared)" in dry.output
    kept = runner.invoke(main, [*args, "--retention-days", "50"])
    assert kept.exit_code == 0 and "0 task log(s)" in kept.output
    forever = runner.invoke(main, [*args, "--retention-days", "0"])
    assert forever.exit_code == 0 and "0 task log(s)" in forever.output
    store = open_store(settings)
    try:
        assert store.state(ref).start_offset == 0
    finally:
        store.close()
    done = runner.invoke(main, args)
    assert done.exit_code == 0, done.output
    assert f"{job.id}/worker-0: dropped 1 segment(s), 15 bytes; starts at 15 (cleared)" in done.output
    store = open_engine(settings.database_url, settings.blob_url).store
    try:
        assert store.state(ref).start_offset == 15
        assert backends_of(store).logs.segments(store.state(ref).log_id) == []
    finally:
        store.close()
    assert not any((tmp_path / "blobs").rglob("*.seg"))
