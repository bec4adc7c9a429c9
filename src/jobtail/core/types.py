"""Value types shared by the storage engine and its backends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class TaskRef:
    """Names one task log: the (project, job, task) triple of the API path."""

    project_id: str
    job_id: str
    task_id: str


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """How one task of a job ended (ModelArts `status.task_statuses`)."""

    task: str
    exit_code: int
    message: str


@dataclass(frozen=True, slots=True)
class LogPosition:
    """Where something begins in a task log: the byte `offset` and the (1-based) `line` there."""

    offset: int
    line: int


@dataclass(frozen=True, slots=True)
class RunningRecord:
    """One attempt of a job (ModelArts `status.running_records`): times in epoch *seconds*, as
    the SDK documents; `end_at` 0 while it runs. `start_type` is `init_or_rescheduled` for the
    first attempt, `restarted` after; `end_related_task` names the task whose failure ended it
    (or ""); `end_recover` is `job_reschedule` when jobtail restarted the job after it, else "".
    `log_starts` (a jobtail extension) says where the attempt begins in each task's log."""

    start_at: int
    start_type: str
    end_at: int = 0
    end_reason: str = ""
    end_related_task: str = ""
    end_recover: str = ""
    log_starts: dict[str, LogPosition] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.end_at > 0


@dataclass(frozen=True, slots=True)
class LogExport:
    """Where a job's task logs are copied when it ends (ModelArts `spec.log_export_path`):
    `host_path`, a directory on the server's machine, and/or `obs_url`, `obs://` or `s3://
    BUCKET/PREFIX`; "" for none."""

    host_path: str = ""
    obs_url: str = ""


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A training job as stored. `document` keeps the caller's job body (unknown fields included).

    Times are epoch milliseconds, as ModelArts reports them; 0 means "not yet". `executor` names
    what runs the job (`local`, or `none` when it runs elsewhere and only ships its logs);
    `owner` identifies the server process running it, for recovery after a crash.
    `running_records` has one entry per attempt (see `RunningRecord`); only the job's owner
    writes them (`JobService.begin_attempt`, `end_attempt`).
    """

    id: str
    project_id: str
    name: str
    tasks: tuple[str, ...]
    created_at: int
    document: dict[str, Any] = field(default_factory=dict)
    phase: str = "Creating"
    secondary_phase: str = "Creating"
    start_time: int = 0
    end_time: int = 0
    task_statuses: tuple[TaskStatus, ...] = ()
    executor: str = "none"
    owner: str | None = None
    running_records: tuple[RunningRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One line of a job's event history (ModelArts `ListTrainingJobEvents`)."""

    time: int  # epoch milliseconds
    level: str  # Info | Warning | Error
    message: str
    source: str  # Job | Task


@dataclass(frozen=True, slots=True)
class JobQuery:
    """A search over one project's jobs; `None` filters are off. `page` counts from 0."""

    name_like: str | None = None
    phases: tuple[str, ...] | None = None
    created_from: int | None = None
    created_to: int | None = None
    sort_by: str = "create_time"
    descending: bool = True
    page: int = 0
    limit: int = 10


@dataclass(frozen=True, slots=True)
class LogState:
    """Where a task log stands at one instant.

    Offsets satisfy `start_offset <= sealed_offset <= end_offset` except that retention may move
    `start_offset` up to (never past) `sealed_offset`. Bytes in `[sealed_offset, end_offset)` are
    the head; everything below `sealed_offset` lives in segments.
    """

    log_id: int
    start_offset: int
    sealed_offset: int
    end_offset: int
    line_count: int  # newlines in [0, end_offset)
    last_append_at: float | None  # epoch seconds of the newest append, None before the first

    @property
    def head_bytes(self) -> int:
        return self.end_offset - self.sealed_offset


@dataclass(frozen=True, slots=True)
class Segment:
    """An immutable blob holding the log bytes `[base_offset, base_offset + length)`."""

    base_offset: int
    length: int
    blob_key: str
    created_at: float

    @property
    def end_offset(self) -> int:
        return self.base_offset + self.length


@dataclass(frozen=True, slots=True)
class HeadChunk:
    """The bytes of one acknowledged append that is not yet sealed, and when they arrived
    (epoch microseconds)."""

    base_offset: int
    data: bytes
    arrived_us: int

    @property
    def end_offset(self) -> int:
        return self.base_offset + len(self.data)


@dataclass(frozen=True, slots=True)
class Arrival:
    """One append as the arrival index keeps it: its bytes start at `offset` and arrived at
    `arrived_us` (epoch microseconds). Within a task log, later offsets never arrived earlier."""

    offset: int
    arrived_us: int


@dataclass(frozen=True, slots=True)
class DeletedJob:
    """What deleting a job's records left to clean up: its task logs' ids and segment blob keys."""

    log_ids: tuple[int, ...]
    segment_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What a caller asks for when creating a job, in the engine's terms (the API layer parses
    its wire format into this). `document` is the request as given, kept and shown back;
    `command`, `working_dir` and `environments` are what the local executor runs; `annotations`
    (ModelArts `metadata.annotations`) carry the fault-tolerance options (`jobtail.core.faults`),
    `log_export` where the logs go when the job ends."""

    name: str
    node_count: int = 1
    command: str | None = None
    working_dir: str | None = None
    environments: dict[str, str] = field(default_factory=dict)
    document: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    log_export: LogExport = field(default_factory=LogExport)


@dataclass(frozen=True, slots=True)
class EncodedPreview:
    """A preview as the API sends it: `body` (made by the store's preview encoder; None when the
    caller said it holds the current one) and `etag`, a strong entity tag that changes whenever
    the body would (the log moved, or the cap)."""

    body: bytes | None
    etag: str


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """A sparse index point: the byte at `offset` starts after `line` newlines and arrived at `appended_at`."""

    offset: int
    line: int
    appended_at: float


@dataclass(frozen=True, slots=True)
class IndexPolicy:
    """How sparse the line and time index is.

    An append gets an entry at its first byte when at least `every_bytes` were appended or
    `every_seconds` passed since the previous entry, and one every `every_bytes` inside it, so
    that finding any line or instant never means scanning more than about `every_bytes`.
    """

    every_bytes: int = 256 * 1024
    every_seconds: float = 1.0

    def scan(self, last: IndexEntry | None, offset: int, lines_before: int, data: bytes,
             now: float) -> tuple[list[IndexEntry], int]:
        """The entries an append of `data` at `offset` adds, given the newest existing entry and
        the number of newlines before `offset`; and the number of newlines in `data` (counted
        in the same one pass over it)."""
        found: list[IndexEntry] = []
        if last is None or offset - last.offset >= self.every_bytes or now - last.appended_at >= self.every_seconds:
            found.append(IndexEntry(offset, lines_before, now))
        lines, counted = lines_before, 0
        for at in range(self.every_bytes, len(data), self.every_bytes):
            lines += data.count(b"\n", counted, at)
            counted = at
            found.append(IndexEntry(offset + at, lines, now))
        return found, lines - lines_before + data.count(b"\n", counted)


@dataclass(frozen=True, slots=True)
class AppendOutcome:
    """What a compare-and-append did: `stored` is False when the log did not end at the expected offset."""

    stored: bool
    end_offset: int


@dataclass(frozen=True, slots=True)
class Preview:
    """The ModelArts preview of a task log, per CONTRACT §10.1.

    `content` covers the log bytes `[end_offset - current_size, end_offset)`, decoded as UTF-8
    with U+FFFD for invalid sequences; `full_size` is the end offset.
    """

    content: str
    current_size: int
    full_size: int
