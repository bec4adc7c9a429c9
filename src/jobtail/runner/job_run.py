"""The state of one job while the local executor runs it: its tasks, and why it is stopping.

A run stops for one reason, the first that happens, except that a deleted job (or one another
runner took over) overrides any other because nothing may be written for it any more:

| reason | when | final phase |
|---|---|---|
| none | every task exited 0 | Completed |
| `failed` | a task exited non-zero (or could not start); the others are stopped | Failed |
| `hang` | no task printed for `hang_timeout_seconds` and the job restarts on a hang | Failed (unless restarted) |
| `terminate` | the job was terminated through the API | Terminated |
| `shutdown` | the server is shutting down | Abnormal |
| `deleted` | the job was deleted, or changed by someone else | (nothing is written) |

A run is one *attempt* of the job (`jobtail.core.faults`): when it failed, `first_failure()`
names the task that failed first, by exit time, and why — from the end of its log since the
attempt began (`jobtail.core.failures`), or its signal or exit code.

Stopping sends SIGTERM to every task still running; each task's shim sends SIGKILL after the
grace period, and the run kills the shims themselves should they outlive it by `KILL_SLACK`.
`task_statuses` messages of tasks that were stopped start with "Stopped".
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass

from jobtail.core.failures import traceback_reason
from jobtail.core.faults import FATAL_SIGNALS, Failure, signal_kind
from jobtail.core.store import LogStore
from jobtail.core.types import JobRecord, LogPosition, TaskRef, TaskStatus
from jobtail.runner.capture import TaskCapture, platform_line
from jobtail.runner.environment import JOB_MARKER
from jobtail.runner.process import Exit, TaskProcess, kill_marked

KILL_SLACK = 5.0  # seconds past the grace period after which a shim that has not exited is killed

FAILED, HANG, TERMINATE, SHUTDOWN, DELETED = "failed", "hang", "terminate", "shutdown", "deleted"
_STOPPED_BECAUSE = {
    HANG: "Stopped because the job hung",
    TERMINATE: "Stopped by a terminate request",
    SHUTDOWN: "Stopped because the jobtail server shut down",
}


@dataclass
class TaskRun:
    name: str
    capture: TaskCapture
    process: TaskProcess | None
    exit: Exit | None = None
    message: str = ""
    stopped: bool = False  # ended because the executor stopped it, not by itself

    def status(self) -> TaskStatus:
        assert self.exit is not None
        return TaskStatus(self.name, self.exit.code, self.message)


class JobRun:
    """Attempt number `attempt` (1-based) of `job`, which begins at `log_starts` in each task log."""

    def __init__(self, job: JobRecord, grace_seconds: float, attempt: int = 1,
                 log_starts: dict[str, LogPosition] | None = None) -> None:
        self.job = job
        self.grace_seconds = grace_seconds
        self.attempt = attempt
        self.log_starts = log_starts or {}
        self.started_at = time.time()
        self.hung = False  # found hung (`jobtail.runner.hangs`)
        self.silent: set[str] = set()  # tasks found silent while others print
        self.failure: Failure | None = None  # why it stopped, when no task's exit says (a hang)
        self.tasks: list[TaskRun] = []
        self.reason: str | None = None
        self.cause: TaskRun | None = None
        self._kill_at: float | None = None

    @property
    def ended(self) -> bool:
        return all(task.exit is not None for task in self.tasks)

    @property
    def done(self) -> bool:
        """Every task has ended and its output is in the log."""
        return self.ended and all(task.capture.done.is_set() for task in self.tasks)

    @property
    def writes(self) -> bool:
        """Whether the job's record may still be written (it was not deleted or taken over)."""
        return self.reason != DELETED

    def sessions(self) -> dict[str, int]:
        return {t.name: t.process.session for t in self.tasks if t.process is not None}

    def started(self, name: str, capture: TaskCapture, process: TaskProcess) -> TaskRun:
        task = TaskRun(name, capture, process)
        self.tasks.append(task)
        return task

    def not_started(self, name: str, capture: TaskCapture, error: str) -> TaskRun:
        """A task whose process could not be started: it ends at once with exit code 127."""
        task = TaskRun(name, capture, None, Exit(127, None, time.time()), f"Could not start: {error}.")
        self.tasks.append(task)
        capture.finish(platform_line(f"cannot start {name}: {error}; exit with 127", "ERROR"))
        self.stop(FAILED, task)
        return task

    def stop(self, reason: str, cause: TaskRun | None = None) -> None:
        """Stop every task still running, for `reason` (see the module docstring)."""
        if self.reason is not None and reason != DELETED:
            return
        if self.reason is None:
            self.cause = cause
        self.reason = reason
        if reason == DELETED:
            for task in self.tasks:
                task.capture.drop_output()
        for task in self.tasks:
            if task.exit is None and task.process is not None:
                task.process.terminate()
        if self._kill_at is None:
            self._kill_at = time.monotonic() + self.grace_seconds + KILL_SLACK

    def poll(self) -> list[TaskRun]:
        """Collect tasks that ended since the last call, in the order they exited; a first
        failure stops the rest."""
        ended = []
        exits = [(task, task.process, task.process.poll()) for task in self.tasks
                 if task.exit is None and task.process is not None]
        for task, process, exit in sorted(((t, p, e) for t, p, e in exits if e is not None),
                                          key=lambda found: found[2].exited_at):
            task.exit = exit
            ended.append(task)
            if exit.signal == signal.SIGKILL:  # perhaps the shim itself was killed: its task may live on
                kill_marked({process.session}, f"{JOB_MARKER}={self.job.id}")
            if self.reason is None and exit.code != 0:
                self.stop(FAILED, task)
            task.stopped = not (self.reason is None or self.cause is task)
            task.message, line = self._describe(task, exit)
            task.capture.finish(line)
        if self._kill_at is not None and time.monotonic() >= self._kill_at:
            for task in self.tasks:
                if task.exit is None and task.process is not None:
                    task.process.kill()
        return ended

    def abandon(self) -> None:
        """Give up waiting for output (shutdown ran out of time): stop storing it."""
        for task in self.tasks:
            task.capture.drop_output()
            if not task.capture.done.is_set():
                task.capture.finish(b"")

    def statuses(self) -> tuple[TaskStatus, ...]:
        return tuple(task.status() for task in self.tasks if task.exit is not None)

    def first_failure(self, logs: LogStore) -> Failure | None:
        """The task of a failed run that exited first with a non-zero code, and why; None
        unless the run stopped because a task failed."""
        if self.failure is not None or self.reason != FAILED:
            return self.failure
        failed = [t for t in self.tasks if t.exit is not None and t.exit.code != 0]
        if not failed:
            return None
        first = min(failed, key=lambda t: (t.exit.exited_at, t is not self.cause))  # type: ignore[union-attr]
        exit = first.exit
        assert exit is not None
        kind = signal_kind(exit.code, exit.signal)
        if exit.signal is not None or exit.code - 128 in FATAL_SIGNALS:
            number = exit.signal if exit.signal is not None else exit.code - 128
            name = exit.signal_name if exit.signal is not None else Exit(exit.code, number).signal_name
            return Failure(kind, first.name, f"Killed by signal {number} ({name})")
        if first.process is None:
            return Failure(kind, first.name, first.message.rstrip("."))
        since = self.log_starts.get(first.name, LogPosition(0, 1)).offset
        try:
            reason = traceback_reason(logs, logs.state(TaskRef(self.job.project_id, self.job.id, first.name)), since)
        except Exception:  # the reason is a courtesy: never let it stop the job from ending
            reason = None
        return Failure(kind, first.name, reason or f"Exited with code {exit.code}")

    def _describe(self, task: TaskRun, exit: Exit) -> tuple[str, bytes]:
        """The task's status message and the platform line that ends its log."""
        if not task.stopped:
            level = "INFO" if exit.code == 0 else "ERROR"
            if exit.signal is not None:
                return (f"Killed by {exit.signal_name}; exit code {exit.code}.",
                        platform_line(f"exit with {exit.code} (killed by {exit.signal_name})", level))
            return f"Exited with code {exit.code}.", platform_line(f"exit with {exit.code}", level)
        if self.reason == FAILED and self.cause is not None:
            why = f"Stopped because {self.cause.name} failed"
        else:
            why = _STOPPED_BECAUSE.get(self.reason or "", "Stopped")
        return f"{why}; {exit.describe()}.", platform_line(f"{why.lower()}; exit with {exit.code}", "WARN")
