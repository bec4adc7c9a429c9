"""Fault tolerance as on ModelArts: which failures restart a job, how often, and how soon.

A job asks for it with `metadata.annotations` (strings, as ModelArts takes them):

| annotation | value | meaning |
|---|---|---|
| `fault-tolerance/job-retry-num` | `"0"` … `"128"` | restart the whole job up to N times after a failure that counts |
| `fault-tolerance/job-unconditional-retry` | `"true"` / `"false"` | any non-zero exit counts |
| `fault-tolerance/hang-retry` | `"true"` / `"false"` | a detected hang counts |

Without a retry count above 0 nothing restarts. With one, these failures count (`Failure.kind`):

- `signal`: a task killed by a signal it did not ask for — SIGKILL (the OOM killer), SIGSEGV,
  SIGBUS — or whose shell reports such a death as its own exit code (137, 139, 135);
- `lost`: a task's supervisor vanished without reporting how the task ended (it was killed
  itself), or the jobtail server running the job stopped (a crash: recovery restarts it);
- `hang`: no task printed for `hang_timeout_seconds` — only with `hang-retry`;
- `exit`: any other non-zero exit (an exception, `sys.exit(3)`, SIGTERM or SIGABRT, a command
  that could not be started) — only with `job-unconditional-retry`.

Other annotations are kept with the job and ignored. Restarts wait `backoff_seconds(attempt)`
first, so no restart loop runs faster than 1, 2, 4 … 30 seconds apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from jobtail.core.errors import InvalidJob

RETRY_NUM = "fault-tolerance/job-retry-num"
UNCONDITIONAL = "fault-tolerance/job-unconditional-retry"
HANG_RETRY = "fault-tolerance/hang-retry"
MAX_RETRIES = 128
MAX_ANNOTATIONS = 64

SIGNAL, LOST, HANG, EXIT = "signal", "lost", "hang", "exit"
# SIGKILL, SIGSEGV, SIGBUS: deaths that are not the code's own doing (Linux numbers).
FATAL_SIGNALS = (9, 11, 7)
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
FIRST_START, RESTARTED = "init_or_rescheduled", "restarted"
RESCHEDULED = "job_reschedule"


def check_annotations(annotations: Mapping[str, str]) -> None:
    """Refuse (InvalidJob "annotations") annotations that are not strings, too many of them, or
    fault-tolerance values jobtail cannot read; unknown annotations pass."""
    if len(annotations) > MAX_ANNOTATIONS:
        raise InvalidJob("annotations", f"At most {MAX_ANNOTATIONS} annotations.")
    for name, value in annotations.items():
        if "\0" in name or "\0" in value or len(name) > 256 or len(value) > 4096:
            raise InvalidJob("annotations", f"The annotation {name[:64]!r} is too long or holds a NUL character.")
    FaultPolicy.from_annotations(annotations)


@dataclass(frozen=True, slots=True)
class FaultPolicy:
    """What a job's annotations ask for (see the module docstring)."""

    retries: int = 0
    unconditional: bool = False
    hang_retry: bool = False

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, str]) -> FaultPolicy:
        """The policy; InvalidJob("annotations") for a value that is not what the table says."""
        count = annotations.get(RETRY_NUM, "0")
        if not (count.isascii() and count.isdigit()) or int(count) > MAX_RETRIES:
            raise InvalidJob("annotations", f"{RETRY_NUM} must be a whole number from 0 to {MAX_RETRIES}, "
                                            f"as a string; not {count[:32]!r}.")
        return cls(int(count), _flag(annotations, UNCONDITIONAL), _flag(annotations, HANG_RETRY))

    @property
    def attempts(self) -> int:
        """How many attempts the job may have: the first and its restarts."""
        return 1 + self.retries

    def counts(self, kind: str) -> bool:
        """Whether a failure of `kind` may restart the job (attempts left aside)."""
        if self.retries == 0:
            return False
        if kind == HANG:
            return self.hang_retry
        return kind in (SIGNAL, LOST) or self.unconditional

    def restarts(self, kind: str, attempt: int) -> bool:
        """Whether attempt number `attempt` (1-based) ending with a failure of `kind` restarts the job."""
        return self.counts(kind) and attempt < self.attempts


def _flag(annotations: Mapping[str, str], name: str) -> bool:
    value = annotations.get(name, "false").lower()
    if value not in ("true", "false"):
        raise InvalidJob("annotations", f'{name} must be "true" or "false"; not {value[:32]!r}.')
    return value == "true"


def signal_kind(code: int, signal: int | None) -> str:
    """The kind of a task's non-zero exit: `signal` for a fatal signal (or its shell's report
    of one, 128 + N), else `exit`."""
    if signal in FATAL_SIGNALS or (signal is None and code - 128 in FATAL_SIGNALS):
        return SIGNAL
    return EXIT


def backoff_seconds(attempt: int) -> float:
    """How long to wait before starting attempt `attempt + 1` after attempt `attempt` ended."""
    return min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2.0 ** max(0, attempt - 1))


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an attempt ended badly: its `kind`, the `task` that failed first ("" when no single
    task did: a hang, a lost server) and `reason`, what the task's log or exit says
    (`DivergenceError: loss is inf`, `Killed by signal 9 (SIGKILL)`, `Exited with code 3`)."""

    kind: str
    task: str
    reason: str

    def because(self) -> str:
        """The failure as the end of a sentence: "because {…}"."""
        if not self.task:
            return self.reason
        if self.kind == SIGNAL and self.reason.startswith("Killed by "):
            return f"{self.task} was killed by {self.reason.removeprefix('Killed by ')}"
        if self.kind == LOST:
            return f"the supervisor of {self.task} was lost ({self.reason})"
        return f"{self.task} failed first: {self.reason}"
