"""Hang detection: a running job none of whose running tasks printed for `hang_timeout_seconds`
is hung, and a task silent that long while others still print is a stuck rank. Tasks that have
ended (worker-0 finished, worker-1 hangs) do not count.

"Printed" is the task log's last append (`LogState.last_append_at`: one state read per task per
check, every `check_seconds`), or the attempt's start before its first output. What follows is
the executor's (`jobtail.runner.local`): an event and a platform line in each log, and with the
`fault-tolerance/hang-retry` annotation a restart (`jobtail.core.faults`). Each is reported once
per attempt.
"""

from __future__ import annotations

import time

from jobtail.core.errors import JobtailError
from jobtail.core.store import LogStore
from jobtail.core.types import TaskRef
from jobtail.runner.job_run import JobRun


class HangWatch:
    """Checks runs against `timeout` seconds of silence (0: never)."""

    def __init__(self, logs: LogStore, timeout: float) -> None:
        self.logs = logs
        self.timeout = timeout
        self.check_seconds = max(0.25, min(5.0, timeout / 4))
        self._checked_at = 0.0

    def due(self) -> bool:
        """Whether a check is due now (at most every `check_seconds`; cheap to call often)."""
        now = time.monotonic()
        if not self.timeout or now - self._checked_at < self.check_seconds:
            return False
        self._checked_at = now
        return True

    def check(self, run: JobRun) -> tuple[bool, list[str]]:
        """(whether the run has just been found hung, the tasks just found silent while others
        print); each is reported once per run."""
        running = [task for task in run.tasks if task.exit is None]
        if run.reason is not None or run.hung or not running:
            return False, []
        now = time.time()
        quiet: dict[str, float] = {}
        for task in running:
            try:
                state = self.logs.state(TaskRef(run.job.project_id, run.job.id, task.name))
            except JobtailError:
                return False, []
            quiet[task.name] = now - max(state.last_append_at or 0.0, run.started_at)
        if all(seconds >= self.timeout for seconds in quiet.values()):
            run.hung = True
            return True, []
        silent = [task for task, seconds in quiet.items() if seconds >= self.timeout and task not in run.silent]
        run.silent.update(silent)
        return False, silent
