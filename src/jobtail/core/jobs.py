"""Training jobs: their ModelArts body, their phases and their event history.

Phases follow ModelArts: Creating → Pending → Running → Completed | Failed | Terminated, with
Terminating in between on a stop, and Abnormal for a job whose runner vanished. Every change
is a compare-and-set on the stored phase, so an executor and an API call that race (a task
exits just as someone terminates the job) cannot both win.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from jobtail.core import ids
from jobtail.core.errors import InvalidParameter, JobNotTerminable
from jobtail.core.store import LogStore
from jobtail.core.types import JobEvent, JobQuery, JobRecord

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

JOB_KINDS = ("job", "federated_pool_job", "edge_job", "hetero_job", "mrs_job", "autosearch_job",
             "diag_job", "visualization_job")
EXECUTORS = ("local", "none")
# execve(2) refuses one argument or environment string over 128 KiB (MAX_ARG_STRLEN, its NUL included).
MAX_ARG_BYTES = 128 * 1024 - 1


def node_count(document: dict[str, Any]) -> int:
    """`spec.resource.node_count` of a job body (1 when absent), validated."""
    spec = document.get("spec") or {}
    resource = spec.get("resource") or {} if isinstance(spec, dict) else {}
    count = resource.get("node_count", 1) if isinstance(resource, dict) else 1
    if isinstance(count, bool) or not isinstance(count, int):
        raise InvalidParameter("spec.resource.node_count")
    return count


def check_startable(algorithm: dict[str, Any], environments: dict[str, str]) -> None:
    """Refuse, naming the parameter, what no process could be started with: a NUL anywhere, a
    variable name that is empty or holds `=`, a working directory that is not a string, and a
    command or `NAME=value` longer than the kernel takes for one string (`MAX_ARG_BYTES`)."""
    command = algorithm.get("command")
    if isinstance(command, str):
        if "\0" in command:
            raise InvalidParameter("algorithm.command", "It holds a NUL character.")
        if len(command.encode()) > MAX_ARG_BYTES:
            raise InvalidParameter("algorithm.command", f"It is longer than {MAX_ARG_BYTES} bytes.")
    working_dir = algorithm.get("working_dir")
    if working_dir is not None and not isinstance(working_dir, str):
        raise InvalidParameter("algorithm.working_dir", "It must be a string.")
    if working_dir and "\0" in working_dir:
        raise InvalidParameter("algorithm.working_dir", "It holds a NUL character.")
    for name, value in environments.items():
        shown = repr(name if len(name) <= 64 else name[:64] + "…")
        if not name:
            raise InvalidParameter("algorithm.environments", "A variable name is empty.")
        if "=" in name:
            raise InvalidParameter("algorithm.environments", f"The variable name {shown} holds '='.")
        if "\0" in name or "\0" in value:
            raise InvalidParameter("algorithm.environments", f"The variable {shown} holds a NUL character.")
        if len(name.encode()) + 1 + len(value.encode()) > MAX_ARG_BYTES:
            raise InvalidParameter("algorithm.environments",
                                   f"The variable {shown} is longer than {MAX_ARG_BYTES} bytes (NAME=value).")


class JobService:
    """Job lifecycle on top of a LogStore. Thread-safe; every method is a few database calls."""

    def __init__(self, store: LogStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- the API's side -----------------------------------------------------------------------

    def create(self, project_id: str, document: dict[str, Any], executor: str) -> JobRecord:
        """Validate a ModelArts job body and create the job; unknown fields are kept as given."""
        kind = document.get("kind", "job")
        if kind not in JOB_KINDS:
            raise InvalidParameter("kind")
        metadata = document.get("metadata")
        if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
            raise InvalidParameter("metadata.name")
        algorithm = document.get("algorithm") or {}
        if not isinstance(algorithm, dict):
            raise InvalidParameter("algorithm")
        environments = algorithm.get("environments") or {}
        if not isinstance(environments, dict) or len(environments) > 100 or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in environments.items()
        ):
            raise InvalidParameter("algorithm.environments")
        if executor == "local" and not isinstance(algorithm.get("command"), str):
            raise InvalidParameter("algorithm.command", "The local executor runs algorithm.command.")
        check_startable(algorithm, environments)
        job = self.store.create_job(
            project_id, metadata["name"], node_count=node_count(document), document=document, executor=executor
        )
        self.event(job, "Training job is created.")
        if executor == "none":  # it runs elsewhere: running as far as we can tell, until stopped
            running = self.transition(job, RUNNING)
            if running is not None:
                self.event(running, "Training job is running.")
                return running
        return job

    def get(self, project_id: str, job_id: str) -> JobRecord:
        return self.store.get_job(project_id, job_id)

    def search(self, project_id: str, query: JobQuery) -> tuple[int, int, list[JobRecord]]:
        ids.check_project_id(project_id)
        return self.store.meta.search_jobs(project_id, query)

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
            if self.store.meta.update_job(changed, (job.phase,)):
                self.event(changed, "Training job is terminated." if immediate else "Training job is terminating.")
                return changed

    def delete(self, project_id: str, job_id: str) -> None:
        """Delete the job and its logs. A running local job's processes are stopped by the
        executor when it notices the job is gone."""
        self.store.delete_job(project_id, job_id)

    def events(self, project_id: str, job_id: str, **filters: Any) -> tuple[int, list[JobEvent]]:
        self.get(project_id, job_id)
        return self.store.meta.job_events(job_id, **filters)

    # -- the executor's side ------------------------------------------------------------------

    def transition(self, job: JobRecord, phase: str, *, expected: tuple[str, ...] | None = None,
                   **changes: Any) -> JobRecord | None:
        """Move `job` to `phase` if its stored phase is still `job.phase` (or one of `expected`);
        returns the new record, or None when someone else changed the job first."""
        changed = dataclasses.replace(self._with_phase(job, phase), **changes)
        if self.store.meta.update_job(changed, expected or (job.phase,)):
            return changed
        return None

    def event(self, job: JobRecord, message: str, level: str = "Info", source: str = "Job") -> None:
        self.store.meta.add_job_event(job.id, JobEvent(self._now_ms(), level, message, source))

    def in_phases(self, phases: tuple[str, ...], executor: str) -> list[JobRecord]:
        return self.store.meta.jobs_in_phases(phases, executor)

    def _with_phase(self, job: JobRecord, phase: str) -> JobRecord:
        now = self._now_ms()
        start = job.start_time or (now if phase == RUNNING else 0)
        end = now if phase in TERMINAL and not job.end_time else job.end_time
        return dataclasses.replace(job, phase=phase, secondary_phase=_SECONDARY[phase], start_time=start, end_time=end)
