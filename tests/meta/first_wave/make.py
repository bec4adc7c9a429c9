"""Makes the first release's databases that tests/meta/test_migrate.py upgrades.

Run with the first release's source (commit 72f3ba5) on the path, not this checkout's:

    git archive 72f3ba5 src | tar -x -C /tmp/fw
    PYTHONPATH=/tmp/fw/src .venv/bin/python tests/meta/first_wave/make.py sqlite:///…/sqlite/jobtail.db …/sqlite
    PYTHONPATH=/tmp/fw/src .venv/bin/python tests/meta/first_wave/make.py postgresql://… …/postgres
    pg_dump --inserts --no-owner --no-privileges … | grep -v '^\\' > tests/meta/first_wave/postgres/postgres.sql

(the grep drops pg_dump's psql-only `\restrict` lines, so the dump runs as plain SQL). It writes
DIR/blobs (the sealed segments) and DIR/expected.json: what the upgraded database must show
(each log's digest, size and line count; the identities).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

from jobtail.auth import manage
from jobtail.core.types import TaskRef
from jobtail.meta.identity import open_identity
from jobtail.settings import Settings
from jobtail.wiring import open_store

MASTER_KEY = bytes(range(32))
PROJECT = "f1r5tc0ffee"


def main(url: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=out, database_url=url, blob_url=(out / "blobs").resolve().as_uri(), seal_bytes=4096)
    identity = open_identity(url)
    manage.create_project(identity, "first", PROJECT)
    manage.create_user(identity, "alice", "correct horse battery")
    manage.grant(identity, "alice", PROJECT, "developer")
    issued = manage.create_credential(identity, MASTER_KEY, project_id=PROJECT, role="ingest")
    identity.close()
    store = open_store(settings)
    job = store.create_job(PROJECT, "first-wave", node_count=2)
    logs = {}
    for task in job.tasks:
        ref = TaskRef(PROJECT, job.id, task)
        written = b""
        for batch in range(12):
            data = b"".join(f"{task} epoch {batch} step {i} loss={1 / (i + 1):.4f}\n".encode() for i in range(40))
            store.append(ref, data)
            written += data
            time.sleep(0.01)
            if batch == 7:
                store.seal(ref)  # segments up to here, the rest stays in the head
        logs[task] = {"sha256": hashlib.sha256(written).hexdigest(), "size": len(written), "lines": written.count(b"\n")}
    store.close()
    (out / "expected.json").write_text(json.dumps({
        "project": PROJECT, "job": job.id, "logs": logs, "access_key": issued.credential.access_key,
        "secret_key": issued.secret_key, "master_key": MASTER_KEY.hex(),
    }, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
