"""What a new executor does about jobs whose runner died: run records and recovery at start.

While a job runs, `DATA_DIR/runner/<job id>.json` records its owner and the session id of each
task (`{"owner": …, "sessions": {"worker-0": 1234, …}}`); the executor touches it every
`HEARTBEAT_SECONDS`, so its mtime says when the job was last known to run. A server killed with
SIGKILL leaves the record behind. Its tasks normally stop by themselves (each shim hears of its
parent's death), but when the shim was killed too, processes may survive; so at the start of a lease:

1. For each record whose owner is a dead process of this host, every live process that is in one
   of the recorded sessions *and* carries `JOBTAIL_JOB_ID=<the job>` in its environment is
   killed — both must hold, so a recycled pid or session id is never touched. Then the record goes.
2. Each job of executor `local` that is Running or Terminating and owned by a dead process of
   this host becomes Abnormal, with the event "The jobtail server running this job stopped (…);
   its processes were stopped.", the same message in `task_statuses` (exit code -1: unknown) and
   a platform line at the end of each task log; its end time (so its duration) is when its
   record was last touched, not the time of recovery. A Running job whose annotations allow a
   restart after a lost supervisor (`jobtail.core.faults`, kind `lost`) is instead handed to
   `restart`, which takes it over and starts its next attempt after the backoff; it stays
   Running, and its logs and events say so. A Pending job (queued, never started) goes
   back to Creating so that an executor runs it.

Jobs owned on another host (or pid namespace) are left to that host's executor.

A sandboxed task (`jobtail.runner.sandbox`) lives in a pid namespace of its own, but the host's
/proc shows its processes with their host pids, sessions and environments, so step 1 finds them
the same way; the recorded session is bwrap's, which its shim (pid 1 of the namespace) shares, and
killing the shim makes the kernel kill whatever is left inside.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from jobtail.core.errors import JobtailError
from jobtail.core.faults import LOST, Failure
from jobtail.core.jobs import ABNORMAL, CREATING, PENDING, RUNNING, TERMINATING, JobService
from jobtail.core.store import LogStore
from jobtail.core.types import JobRecord, TaskRef, TaskStatus
from jobtail.runner.capture import platform_line
from jobtail.runner.environment import JOB_MARKER
from jobtail.runner.owner import Owner
from jobtail.runner.process import kill_marked

log = logging.getLogger("jobtail.runner")

HEARTBEAT_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class RunRecord:
    job_id: str
    owner: Owner | None
    sessions: dict[str, int]
    alive_at: float  # epoch seconds: when the job was last known to run (the record's mtime)


class RunRecords:
    """The run records of one data directory (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._beaten_at = 0.0

    def beat(self, job_ids: Iterable[str]) -> None:
        """Mark these jobs as running now (at most every HEARTBEAT_SECONDS; cheap to call often)."""
        now = time.monotonic()
        if now - self._beaten_at < HEARTBEAT_SECONDS:
            return
        self._beaten_at = now
        for job_id in job_ids:
            try:
                os.utime(self.directory / f"{job_id}.json")
            except FileNotFoundError:
                pass  # no task started yet

    def write(self, job_id: str, owner: Owner, sessions: dict[str, int]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{job_id}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"owner": str(owner), "sessions": sessions}))
        os.replace(temporary, path)

    def remove(self, job_id: str) -> None:
        (self.directory / f"{job_id}.json").unlink(missing_ok=True)

    def all(self) -> list[RunRecord]:
        found = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                data = json.loads(path.read_text())
                sessions = {str(k): int(v) for k, v in data["sessions"].items()}
                found.append(RunRecord(path.stem, Owner.parse(data.get("owner")), sessions, path.stat().st_mtime))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                log.warning("ignoring unreadable run record %s", path)
        return found


def kill_leftovers(job_id: str, sessions: set[int]) -> int:
    """SIGKILL every live process of `sessions` that carries the job's marker; returns how many."""
    return kill_marked(sessions, f"{JOB_MARKER}={job_id}")


def _dead_here(owner: Owner | None) -> bool:
    return owner is not None and owner.here() and not owner.process_alive()


# Takes over a job whose runner died and schedules its restart; given the job, the failure and
# when its attempt ended (epoch seconds); False when the job changed meanwhile.
Restart = Callable[[JobRecord, Failure, float], bool]


def recover(jobs: JobService, logs: LogStore, records: RunRecords, restart: Restart | None = None) -> list[str]:
    """Clean up after dead runners of this host (module docstring); returns the jobs marked Abnormal."""
    alive_at: dict[str, float] = {}  # job id → when its dead runner last touched its record
    for record in records.all():
        if _dead_here(record.owner):
            alive_at[record.job_id] = record.alive_at
            killed = kill_leftovers(record.job_id, set(record.sessions.values()))
            if killed:
                log.warning("killed %d leftover process(es) of job %s", killed, record.job_id)
            records.remove(record.job_id)
    abnormal = []
    for job in jobs.in_phases((PENDING, RUNNING, TERMINATING), "local"):
        owner = Owner.parse(job.owner)
        if owner is None or not _dead_here(owner):
            continue
        if job.phase == PENDING:
            requeued = jobs.transition(job, CREATING, owner=None)
            if requeued is not None:
                jobs.event(requeued, f"Training job is queued again: the jobtail server that queued it "
                                     f"stopped ({owner.describe()}).", "Warning")
            continue
        message = f"The jobtail server running this job stopped ({owner.describe()}); its processes were stopped."
        ended_at = alive_at.get(job.id, time.time())
        failure = Failure(LOST, "", f"the jobtail server running it stopped ({owner.describe()})")
        attempt = max(1, len(job.running_records))
        if (restart is not None and job.phase == RUNNING and jobs.fault_policy(job).restarts(LOST, attempt)
                and restart(job, failure, ended_at)):
            _note_in_logs(logs, job, f"{message[:-1]}; restarting the job.", "WARN", seal=False)
            jobs.event(job, f"{message[:-1]}; restarting the job.", "Warning")
            continue
        _note_in_logs(logs, job, message)  # first: a job that shows ended has all of its log
        statuses = tuple(TaskStatus(task, -1, message) for task in job.tasks)
        stopped = {"end_time": max(job.start_time, int(alive_at[job.id] * 1000))} if job.id in alive_at else {}
        marked = jobs.transition(job, ABNORMAL, expected=(RUNNING, TERMINATING), task_statuses=statuses, **stopped)
        if marked is None:
            continue
        jobs.event(marked, message, "Error")
        abnormal.append(job.id)
    return abnormal


def _note_in_logs(logs: LogStore, job: JobRecord, message: str, level: str = "ERROR", *, seal: bool = True) -> None:
    """End each task log with a platform line saying what happened (and seal it)."""
    for task in job.tasks:
        ref = TaskRef(job.project_id, job.id, task)
        try:
            logs.append_line(ref, platform_line(message, level))
            if seal:
                logs.seal(ref)
        except JobtailError:
            log.exception("could not note the recovery in %s", ref)
