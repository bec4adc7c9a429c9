"""The environment of a task: what a distributed PyTorch script and a ModelArts script expect.

Built in layers, later ones winning:

1. the server's own environment, minus every `JOBTAIL_*` variable (they can hold database
   passwords) and `PROMETHEUS_MULTIPROC_DIR` (the server's metrics files) — so PATH, HOME,
   virtualenvs and CUDA settings carry over; in a sandbox also
   minus the credentials the server's own backends may take from it: `PG*` (libpq: PGPASSWORD,
   PGPASSFILE, …) and `AWS_*` (the S3 blob store's keys);
2. `PYTHONUNBUFFERED=1`, so Python output reaches the log as it is printed instead of in 8 KiB
   blocks (a job may set it back to empty in `algorithm.environments`);
3. the job's `algorithm.environments`;
4. the variables jobtail owns, which a job cannot override: every task runs on this machine, so
   addresses are loopback and `LOCAL_RANK` equals `RANK`.

| Variable | Value |
|---|---|
| `RANK`, `LOCAL_RANK`, `VC_TASK_INDEX` | the task's index (`worker-1` → 1) |
| `WORLD_SIZE`, `LOCAL_WORLD_SIZE`, `MA_NUM_HOSTS`, `VC_WORKER_NUM` | the number of tasks |
| `MASTER_ADDR`, `MA_CURRENT_HOST_IP`, `MA_CURRENT_IP` | `127.0.0.1` |
| `MASTER_PORT` | a free TCP port, one per job |
| `VC_WORKER_HOSTS` | `127.0.0.1` once per task, comma-separated |
| `MA_TASK_NAME` | `worker` |
| `JOBTAIL_JOB_ID`, `JOBTAIL_TASK_ID`, `JOBTAIL_PROJECT_ID` | the job's id, the task (`worker-0`), the project |
| `JOBTAIL_ATTEMPT` | which attempt of the job this is: 1, then 2 after the first restart (`jobtail.core.faults`) |

`JOBTAIL_JOB_ID` also marks the task's processes: recovery kills a leftover process only if
it carries the id of the job it belonged to (`jobtail.runner.recovery`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from jobtail.core.types import JobRecord

LOOPBACK = "127.0.0.1"
JOB_MARKER = "JOBTAIL_JOB_ID"
MARKERS = (JOB_MARKER, "JOBTAIL_TASK_ID")  # on every process of a task, bwrap's included
PRIVATE_PREFIXES = ("JOBTAIL_", "PROMETHEUS_MULTIPROC_DIR")
SANDBOX_PRIVATE_PREFIXES = (*PRIVATE_PREFIXES, "PG", "AWS_")


def free_port() -> int:
    """A TCP port that was free on loopback a moment ago (the job's `MASTER_PORT`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def job_environments(job: JobRecord) -> dict[str, str]:
    """`algorithm.environments` of the job body (validated as str → str at create)."""
    algorithm = job.document.get("algorithm") or {}
    environments = algorithm.get("environments") or {} if isinstance(algorithm, dict) else {}
    return {str(k): str(v) for k, v in environments.items()} if isinstance(environments, dict) else {}


def task_environment(job: JobRecord, index: int, master_port: int,
                     base: Mapping[str, str] | None = None, *, sandboxed: bool = False,
                     attempt: int = 1) -> dict[str, str]:
    """The environment of task `index` of `job` (see the module docstring for the layers)."""
    inherited = os.environ if base is None else base
    private = SANDBOX_PRIVATE_PREFIXES if sandboxed else PRIVATE_PREFIXES
    env = {k: v for k, v in inherited.items() if not k.startswith(private)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(job_environments(job))
    count = len(job.tasks)
    env.update({
        "RANK": str(index),
        "LOCAL_RANK": str(index),
        "WORLD_SIZE": str(count),
        "LOCAL_WORLD_SIZE": str(count),
        "MASTER_ADDR": LOOPBACK,
        "MASTER_PORT": str(master_port),
        "MA_NUM_HOSTS": str(count),
        "MA_CURRENT_HOST_IP": LOOPBACK,
        "MA_CURRENT_IP": LOOPBACK,
        "MA_TASK_NAME": "worker",
        "VC_TASK_INDEX": str(index),
        "VC_WORKER_NUM": str(count),
        "VC_WORKER_HOSTS": ",".join([LOOPBACK] * count),
        JOB_MARKER: job.id,
        "JOBTAIL_TASK_ID": job.tasks[index],
        "JOBTAIL_PROJECT_ID": job.project_id,
        "JOBTAIL_ATTEMPT": str(attempt),
    })
    return env
