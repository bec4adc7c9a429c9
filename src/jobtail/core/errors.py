"""Domain errors raised by the storage engine and the job records.

    JobtailError                      every error jobtail raises on purpose
    ├── InvalidId                     a project, job or task id is malformed
    ├── InvalidJob                    a job's specification breaks a job rule (its name, node count, command…)
    ├── InvalidInstant                a point in time that is neither a duration, ISO 8601 nor epoch ms
    ├── InvalidPattern                a search pattern that cannot be compiled
    ├── JobNotFound                   no such job in this project (another project's job looks the same)
    ├── DuplicateJobName              a job of that name already exists in the project
    ├── TaskNotFound                  the job has no task of that name
    ├── LogNotGenerated               the task exists but has not written a byte yet
    ├── LogCleared                    every byte of the task log was dropped by retention
    ├── JobNotTerminable              terminate asked of a job that is not running
    ├── OffsetConflict                an append did not start at the end of the log
    ├── LogTooLarge                   an append would take a task log past its size cap
    ├── StorageFull                   the database or segment store has no space left: nothing was stored
    ├── StorageNotWritable            the data directory, database or segment store refuses writes
    ├── SchemaTooNew                  the metadata database was upgraded by a newer jobtail
    └── StorageError                  stored data is missing or inconsistent (not the caller's fault)

The HTTP layer maps each class to a ModelArts error code in exactly one place
(`jobtail.http.errors`), and names the API parameter an error is about; nothing here knows
about status codes or parameter names.
"""

from __future__ import annotations

import errno


class JobtailError(Exception):
    """Base class; `message` is safe to show to the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidId(JobtailError):
    """An identifier is malformed; `kind` says which: "project", "job" or "task"."""

    KINDS = ("project", "job", "task")

    def __init__(self, kind: str) -> None:
        super().__init__(f"Invalid {kind} id.")
        self.kind = kind


class InvalidJob(JobtailError):
    """A job specification breaks a job rule. `field` names the `JobSpec` field ("name",
    "node_count", "command", "working_dir", "environments", "annotations",
    "log_export_path.host_path", "log_export_path.obs_url"); `reason` says why (may be "")."""

    def __init__(self, field: str, reason: str = "") -> None:
        super().__init__(f"Invalid job {field}." + (f" {reason}" if reason else ""))
        self.field = field
        self.reason = reason


class InvalidInstant(JobtailError):
    """`text` is no point in time: not a duration (`10m`), an ISO 8601 time or epoch milliseconds."""

    def __init__(self, text: str) -> None:
        super().__init__("Invalid point in time: use a duration (10m, 2h), an ISO 8601 time or epoch ms.")
        self.text = text


class InvalidPattern(JobtailError):
    """A search pattern cannot be compiled; `reason` says why (may be "")."""

    def __init__(self, reason: str = "") -> None:
        super().__init__("Invalid search pattern." + (f" {reason}" if reason else ""))
        self.reason = reason


class JobNotFound(JobtailError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"Training job (ID: {job_id}) not found.")
        self.job_id = job_id


class DuplicateJobName(JobtailError):
    def __init__(self, name: str) -> None:
        super().__init__(f"Duplicate training job (name {name}).")
        self.name = name


class JobNotTerminable(JobtailError):
    def __init__(self, phase: str) -> None:
        super().__init__("The job cannot be terminated.")
        self.phase = phase


class TaskNotFound(JobtailError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"The job has no task {task_id}.")
        self.task_id = task_id


class LogNotGenerated(JobtailError):
    def __init__(self) -> None:
        super().__init__("the log file is not generated")


class LogCleared(JobtailError):
    def __init__(self) -> None:
        super().__init__("the log file has been cleared")


class OffsetConflict(JobtailError):
    """The append's offset is not the end of the log and its bytes do not match what is stored.

    `full_size` is the current end offset: a writer resumes by sending from there.
    """

    def __init__(self, offset: int, full_size: int) -> None:
        super().__init__(
            f"Offset {offset} does not continue the log: it ends at {full_size} "
            "and the bytes stored there differ. Resend from full_size."
            if offset < full_size
            else f"Offset {offset} is past the end of the log ({full_size}). Resend from full_size."
        )
        self.offset = offset
        self.full_size = full_size


class LogTooLarge(JobtailError):
    """An append would take the task log past `limit` bytes; nothing of it was stored.

    `full_size` is the log's end offset: the bytes already stored stay readable.
    """

    def __init__(self, limit: int, full_size: int) -> None:
        super().__init__(
            f"Exceed quota limit of resource(task log size): the log holds {full_size} bytes "
            f"and may hold at most {limit}."
        )
        self.limit = limit
        self.full_size = full_size


class StorageFull(JobtailError):
    """The database or the segment store has no space left (a full disk, a quota): nothing of
    the operation was stored, what was stored before stays readable, and writes succeed again
    once space is freed. `where` says which: "database" or "segment store"."""

    def __init__(self, where: str) -> None:
        super().__init__(f"Insufficient storage: no space left on the log store ({where}); nothing of this "
                         "request was stored. Retry once the operator has freed space.")
        self.where = where


class StorageNotWritable(JobtailError):
    """`what` (the data directory, the database, the segment store) refuses writes: read-only,
    or not ours to write; `reason` is what the system said."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"The log store cannot write to {what}: {reason}")
        self.what = what
        self.reason = reason


def storage_error(exc: OSError, where: str) -> Exception:
    """The domain error for an OSError writing local files of the log store (`where`: "segment
    store", "head files"): StorageFull for no space or quota, StorageNotWritable for a read-only
    or forbidden place, else the error itself."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(where)
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StorageNotWritable(f"the {where}", exc.strerror or str(exc))
    return exc


class SchemaTooNew(JobtailError):
    """The metadata database was upgraded by a newer jobtail: its schema revision `found` is
    not one this build knows (its newest is `known`). Nothing was changed."""

    def __init__(self, found: str, known: str) -> None:
        super().__init__(f"The metadata database's schema is at revision {found}, newer than this jobtail knows "
                         f"(its newest is {known}): run a jobtail at least as new as the one that upgraded it.")
        self.found = found
        self.known = known


class StorageError(JobtailError):
    """Stored data is missing or inconsistent; `hint` says how an operator can repair it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint
