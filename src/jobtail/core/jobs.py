"""Training jobs: the rules they follow, their phases and their event history.

`JobService` is the one home of the job rules: what a job may be created with (a name, 1 to
`MAX_NODE_COUNT` tasks, a command a process can start with), which phase may follow which, who
may terminate what. The API layer turns its wire format into a `JobSpec`; the executor and the
API both move jobs through the service.

Phases follow ModelArts: Creating → Pending → Running → Completed | Failed | Terminated, with
Terminating in between on a stop, and Abnormal for a job whose runner vanished. Every change
is a compare-and-set on the stored phase, so an executor and an API call that race (a task
exits just as someone terminates the job) cannot both win.

A job may run several times (attempts: `jobtail.core.faults`); the phase stays Running across
restarts, and each attempt is a `RunningRecord`, which only the job's owner writes
(`begin_attempt`, `end_attempt`) — never through a phase change, so neither overwrites the other.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jobtail.core import ids
from jobtail.core.errors import InvalidJob, JobNotFound, JobNotTerminable
from jobtail.core.faults import FIRST_START, RESTARTED, FaultPolicy, check_annotations
from jobtail.core.job_records import JobRecords
from jobtail.core.log_export import check_log_export
from jobtail.core.store import LogStore
from jobtail.core.types import JobEvent, JobQuery, JobRecord, JobSpec, LogExport, LogPosition, RunningRecord

CREATING, PENDING, RUNNING = "Creating", "Pending", "Running"
TERMINATING, TERMINATED = "Terminating", "Terminated"
COMPLETED, FAILED, ABNORMAL = "Completed", "Failed", "Abnormal"
TERMINAL = (COMPLETED, FAILED, TERMINATED, ABNORMAL)
ACTIVE = (CREATING, PENDING, RUNNING, TERMINATING)
TERMINABLE = (CREATING, PENDING, RUNNING)
ALL_PHASES = (*ACTIVE, *TERMINAL)

# The secondary phase shown with each phase (ModelArts: internal, "do not rely on it").
_SECONDARY = {CREATING: "Creating", PENDING: "Queuing", RUNNING: "Running", TERMINATING: "Terminating",
              TERMINATED: "Terminated", COMPLETED: "Completed", FAILED: "Failed", ABNORMAL: "Lost"}

MAX_NODE_COUNT = 256
# execve(2) refuses one argument or environment string over 128 KiB (MAX_ARG_STRLEN, its NUL included).
MAX_ARG_BYTES = 128 * 1024 - 1


def check_startable(spec: JobSpec) -> None:
    """Refuse, naming the field, what no process could be started with: a NUL anywhere, a
    variable name that is empty or holds `=`, and a command or `NAME=value` longer than the
    kernel takes for one string (`MAX_ARG_BYTES`)."""
    if spec.command is not None:
        if "\0" in spec.command:
            raise InvalidJob("command", "It holds a NUL character.")
        if len(spec.command.encode()) > MAX_ARG_BYTES:
            raise InvalidJob("command", f"It is longer than {MAX_ARG_BYTES} bytes.")
    if spec.working_dir and "\0" in spec.working_dir:
        raise InvalidJob("working_dir", "It holds a NUL character.")
    for name, value in spec.environments.items():
        shown = repr(name if len(name) <= 64 else name[:64] + "…")
        if not name:
            raise InvalidJob("environments", "A variable name is empty.")
        if "=" in name:
            raise InvalidJob("environments", f"The variable name {shown} holds '='.")
        if "\0" in name or "\0" in value:
            raise InvalidJob("environments", f"The variable {shown} holds a NUL character.")
        if len(name.encode()) + 1 + len(value.encode()) > MAX_ARG_BYTES:
            raise InvalidJob("environments", f"The variable {shown} is longer than {MAX_ARG_BYTES} bytes (NAME=value).")


def _mapping(document: dict[str, Any], *path: str) -> dict[str, Any]:
    """The object at `path` in a stored job body (as `jobtail.http.job_views.parse_job` read it
    at create), or an empty one."""
    for key in path:
        value = document.get(key) if isinstance(document, dict) else None
        document = value if isinstance(value, dict) else {}
    return document


class JobService:
    """Job lifecycle over the job records, with their task logs in `logs`. Thread-safe; every
    method is a few database calls. `export_roots` are the directories and `export_obs_urls` the
    object storage URLs under which a job may ask for its logs to be exported
    (`jobtail.core.log_export`)."""

    def __init__(self, records: JobRecords, logs: LogStore, clock: Callable[[], float] = time.time, *,
                 export_roots: Sequence[Path] = (), export_obs_urls: Sequence[str] = ()) -> None:
        self._records = records
        self._logs = logs
        self._clock = clock
        self._export_roots = tuple(export_roots)
        self._export_obs_urls = tuple(export_obs_urls)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- the API's side -----------------------------------------------------------------------

    def create(self, project_id: str, spec: JobSpec, executor: str) -> JobRecord:
        """Create the job `spec` describes, with tasks `worker-0 ... worker-(node_count-1)` and
        an empty log each, if it follows the rules (InvalidJob naming the field otherwise); a job
        that runs elsewhere (`executor` "none") is Running at once."""
        ids.check_project_id(project_id)
        ids.check_job_name(spec.name)
        if not 1 <= spec.node_count <= MAX_NODE_COUNT:
            raise InvalidJob("node_count", f"It must be 1-{MAX_NODE_COUNT}.")
        if executor == "local" and spec.command is None:
            raise InvalidJob("command", "The local executor needs a command to run.")
        check_startable(spec)
        check_annotations(spec.annotations)
        check_log_export(spec.log_export, project_id, self._export_roots, self._export_obs_urls)
        job = JobRecord(
            id=ids.new_job_id(),
            project_id=project_id,
            name=spec.name,
            tasks=tuple(ids.worker_tasks(spec.node_count)),
            created_at=self._now_ms(),
            document=spec.document,
            executor=executor,
        )
        self._records.create_job(job)
        self.event(job, "Training job is created.")
        if executor == "none":  # it runs elsewhere: running as far as we can tell, until stopped
            running = self.transition(job, RUNNING)
            if running is not None:
                self.event(running, "Training job is running.")
                return running
        return job

    def get(self, project_id: str, job_id: str) -> JobRecord:
        """The job; raises InvalidId for a malformed id and JobNotFound (also for another project's job)."""
        ids.check_project_id(project_id)
        ids.check_job_id(job_id)
        job = self._records.get_job(project_id, job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def search(self, project_id: str, query: JobQuery) -> tuple[int, int, list[JobRecord]]:
        ids.check_project_id(project_id)
        return self._records.search_jobs(project_id, query)

    def terminate(self, project_id: str, job_id: str) -> JobRecord:
        """Ask for the job to stop: Terminating while a local executor stops its processes,
        Terminated at once for a job that runs elsewhere or has not started."""
        while True:
            job = self.get(project_id, job_id)
            if job.phase not in TERMINABLE:
                raise JobNotTerminable(job.phase)
            immediate = job.executor != "local" or job.phase == CREATING
            target = TERMINATED if immediate else TERMINATING
            changed = self._with_phase(job, target)
            if self._records.update_job(changed, (job.phase,)):
                self.event(changed, "Training job is terminated." if immediate else "Training job is terminating.")
                return changed

    def delete(self, project_id: str, job_id: str) -> None:
        """Delete the job and its logs. A running local job's processes are stopped by the
        executor when it notices the job is gone."""
        self.get(project_id, job_id)
        deleted = self._records.delete_job(project_id, job_id)
        if deleted is not None:
            self._logs.forget_job(deleted)

    def events(self, project_id: str, job_id: str, **filters: Any) -> tuple[int, list[JobEvent]]:
        self.get(project_id, job_id)
        return self._records.job_events(job_id, **filters)

    # -- the executor's side ------------------------------------------------------------------

    def transition(self, job: JobRecord, phase: str, *, expected: tuple[str, ...] | None = None,
                   **changes: Any) -> JobRecord | None:
        """Move `job` to `phase` if its stored phase is still `job.phase` (or one of `expected`);
        returns the new record, or None when someone else changed the job first."""
        changed = dataclasses.replace(self._with_phase(job, phase), **changes)
        if self._records.update_job(changed, expected or (job.phase,)):
            return changed
        return None

    def event(self, job: JobRecord, message: str, level: str = "Info", source: str = "Job") -> None:
        self._records.add_job_event(job.id, JobEvent(self._now_ms(), level, message, source))

    def in_phases(self, phases: tuple[str, ...], executor: str) -> list[JobRecord]:
        return self._records.jobs_in_phases(phases, executor)

    def fault_policy(self, job: JobRecord) -> FaultPolicy:
        """What the job's annotations ask for when it fails (`jobtail.core.faults`)."""
        annotations = _mapping(job.document, "metadata", "annotations")
        try:
            return FaultPolicy.from_annotations({str(k): str(v) for k, v in annotations.items()})
        except InvalidJob:  # stored before the rule: as if it asked for nothing
            return FaultPolicy()

    def log_export(self, job: JobRecord) -> LogExport:
        """Where the job asked its logs to be exported when it ends (checked at create)."""
        export = _mapping(job.document, "spec", "log_export_path")
        host_path, obs_url = export.get("host_path"), export.get("obs_url")
        return LogExport(host_path if isinstance(host_path, str) else "", obs_url if isinstance(obs_url, str) else "")

    def begin_attempt(self, job: JobRecord, started_at: float, log_starts: dict[str, LogPosition]) -> JobRecord | None:
        """Record a new attempt of `job` that started at `started_at` (epoch seconds), with where
        it begins in each task log; None when `job.owner` no longer owns the job."""
        record = RunningRecord(start_at=int(started_at), start_type=RESTARTED if job.running_records else FIRST_START,
                               log_starts=dict(log_starts))
        return self._set_records(job, (*job.running_records, record))

    def end_attempt(self, job: JobRecord, ended_at: float, reason: str, task: str = "",
                    recover: str = "") -> JobRecord | None:
        """Close the job's running attempt: when it ended (epoch seconds), why, the task whose
        failure ended it, and what was done about it (`job_reschedule`, or ""). The job as it
        was when no attempt is open; None when `job.owner` no longer owns the job."""
        if not job.running_records or job.running_records[-1].ended:
            return job
        last = job.running_records[-1]
        ended = dataclasses.replace(last, end_at=max(int(ended_at), last.start_at, 1), end_reason=reason,
                                    end_related_task=task, end_recover=recover)
        return self._set_records(job, (*job.running_records[:-1], ended))

    def _set_records(self, job: JobRecord, records: tuple[RunningRecord, ...]) -> JobRecord | None:
        if job.owner is None or not self._records.set_running_records(job.id, job.owner, records):
            return None
        return dataclasses.replace(job, running_records=records)

    def _with_phase(self, job: JobRecord, phase: str) -> JobRecord:
        now = self._now_ms()
        start = job.start_time or (now if phase == RUNNING else 0)
        end = now if phase in TERMINAL and not job.end_time else job.end_time
        return dataclasses.replace(job, phase=phase, secondary_phase=_SECONDARY[phase], start_time=start, end_time=end)
