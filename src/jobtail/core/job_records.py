"""The job side of the metadata interface: job records and their event history.

Implemented by `jobtail.meta.sql_jobs` (SQLite, PostgreSQL); every backend passes the same
conformance suite (`tests/meta/test_job_records.py`). All methods are synchronous and
thread-safe; callers in async code run them in a thread. Only `jobtail.core.jobs.JobService`
and the `LogStore` (for "is there such a job?") call them.
"""

from __future__ import annotations

from typing import Protocol

from jobtail.core.types import DeletedJob, JobEvent, JobQuery, JobRecord, RunningRecord


class JobRecords(Protocol):
    def create_job(self, job: JobRecord) -> None:
        """Store `job` and an empty task log for each of `job.tasks`, atomically: a job's task
        logs exist exactly as long as its record. Raises `DuplicateJobName` when the project
        already has a job of that name."""

    def get_job(self, project_id: str, job_id: str) -> JobRecord | None:
        """The job, or None when it does not exist in *this* project."""

    def update_job(self, job: JobRecord, expected_phases: tuple[str, ...]) -> bool:
        """Store `job`'s status fields if the stored phase is one of `expected_phases`; False
        otherwise. The running records are not among them (`set_running_records`)."""

    def set_running_records(self, job_id: str, owner: str, records: tuple[RunningRecord, ...]) -> bool:
        """Store the job's running records if `owner` is still its owner; False otherwise."""

    def jobs_in_phases(self, phases: tuple[str, ...], executor: str) -> list[JobRecord]:
        """Jobs of any project in one of `phases` that `executor` runs, oldest first."""

    def search_jobs(self, project_id: str, query: JobQuery) -> tuple[int, int, list[JobRecord]]:
        """(jobs in the project, jobs matching `query`, the requested page of matches)."""

    def job_phases(self, job_ids: list[str]) -> dict[str, str]:
        """Phases of the jobs (of any project) among `job_ids` that exist (unknown ids are left
        out), in one query for any realistic number of ids: the follow poller asks this."""

    def delete_job(self, project_id: str, job_id: str) -> DeletedJob | None:
        """Delete the job, its events and its task logs' records (head, segment records, index),
        atomically; return what is left to clean up outside the database (the segment blobs),
        or None for a job that does not exist in this project."""

    def add_job_event(self, job_id: str, event: JobEvent) -> None:
        """Append an event to the job's history."""

    def job_events(
        self, job_id: str, *, offset: int, limit: int, descending: bool, level: str | None = None,
        pattern: str | None = None, start: int | None = None, end: int | None = None,
    ) -> tuple[int, list[JobEvent]]:
        """(events matching the filters, the slice `[offset, offset + limit)` of them in time order)."""
