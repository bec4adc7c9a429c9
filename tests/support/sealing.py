"""Interrupted seals for the sweep tests: a real seal in another process, killed with SIGKILL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from jobtail.core.types import TaskRef

# A real seal in another process, killed while it fsyncs its segment: the blob is fully written
# to its temporary file, which is never renamed into place. (The copying seal: the file head's
# seal in place, linking its own file, which leaves no temporary, is turned off.)
KILLED_SEAL = """
import os, sys, time
from jobtail.blobs.registry import open_blobs
from jobtail.core.store import Backends, LogStore
from jobtail.core.types import TaskRef
from jobtail.meta.database import open_database

def stall(fd):
    print("sealing", flush=True)
    time.sleep(60)

os.fsync = stall
database = open_database(sys.argv[1])
database.logs.head_as_segment = lambda log_id, start, max_bytes: None
store = LogStore(Backends(database.jobs, database.logs, open_blobs(sys.argv[2])))
store.seal(TaskRef(*sys.argv[3:6]))
"""


def temporaries(root: Path) -> list[Path]:
    return sorted(root.rglob("*.tmp"))


def kill_a_seal(meta_url: str, blob_root: Path, ref: TaskRef) -> Path:
    """Seal `ref` in another process and SIGKILL it mid-seal; returns the temporary file it left."""
    argv = [sys.executable, "-c", KILLED_SEAL, meta_url, blob_root.as_uri(), ref.project_id, ref.job_id, ref.task_id]
    sealer = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert sealer.stdout is not None and sealer.stdout.readline() == "sealing\n"
    finally:
        sealer.kill()
        sealer.communicate()
    (leftover,) = temporaries(blob_root)
    return leftover
