"""Domain errors raised by the storage engine and the job records.

    JobtailError                      every error jobtail raises on purpose
    ├── InvalidParameter              a path, query or body parameter is malformed
    │   └── InvalidQueryParameter     ... and it is a query parameter
    ├── JobNotFound                   no such job in this project (another project's job looks the same)
    ├── DuplicateJobName              a job of that name already exists in the project
    ├── TaskNotFound                  the job has no task of that name
    ├── LogNotGenerated               the task exists but has not written a byte yet
    ├── LogCleared                    every byte of the task log was dropped by retention
    ├── JobNotTerminable              terminate asked of a job that is not running
    ├── UnsupportedAction             an unknown job action type
    ├── OffsetConflict                an append did not start at the end of the log
    ├── PayloadTooLarge               a request body is over the configured limit
    ├── LogTooLarge                   an append would take a task log past its size cap
    ├── StorageFull                   the database or segment store has no space left: nothing was stored
    ├── StorageNotWritable            the data directory, database or segment store refuses writes
    └── StorageError                  stored data is missing or inconsistent (not the caller's fault)

The HTTP layer maps each class to a ModelArts error code in exactly one place
(`jobtail.http.errors`); nothing here knows about status codes.
"""

from __future__ import annotations


class JobtailError(Exception):
    """Base class; `message` is safe to show to the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParameter(JobtailError):
    """A parameter is malformed; `param` names it as the API does (`task_id`, `offset`, ...)."""

    def __init__(self, param: str, reason: str = "") -> None:
        super().__init__(f"Invalid parameter({param})." + (f" {reason}" if reason else ""))
        self.param = param
        self.reason = reason


class InvalidQueryParameter(InvalidParameter):
    """A query parameter is malformed or out of range."""


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


class UnsupportedAction(JobtailError):
    def __init__(self, action: str) -> None:
        super().__init__(f"Unsupported action type:{action}")
        self.action = action


class TaskNotFound(InvalidParameter):
    def __init__(self, task_id: str) -> None:
        super().__init__("task_id")
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


class PayloadTooLarge(JobtailError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"Request entity too large: the limit is {limit} bytes.")
        self.limit = limit


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


class StorageError(JobtailError):
    """Stored data is missing or inconsistent; `hint` says how an operator can repair it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint
