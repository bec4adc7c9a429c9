"""The local executor: runs jobs created with executor `local` as processes on this machine.

One daemon thread per server process. It runs jobs only while it holds the data directory's
lease (`jobtail.runner.owner`); otherwise it waits to take over. Holding the lease, it first
cleans up after dead runners (`jobtail.runner.recovery`), then every `POLL_SECONDS`, or at once
when `wake()` is called after an API request, it:

1. claims Creating jobs with a compare-and-set Creating → Pending that records `owner`; when
   several executors share a database (replicas on several hosts), exactly one claim succeeds;
2. watches its jobs' records: Terminating stops a job, a deleted job is stopped without writing
   anything, a queued job terminated through the API becomes Terminated;
3. collects tasks that ended (a non-zero exit stops the job's other tasks) and, once every task
   has ended and its output is in the log, records `task_statuses` and the final phase;
4. starts queued jobs in creation order while their tasks fit under `max_running_tasks` (a job
   larger than the cap runs when nothing else does; a job that does not fit yet holds back
   the ones behind it, so big jobs are not starved). Pending → Running, then one process per
   task (`jobtail.runner.process`) with the environment of `jobtail.runner.environment`, its
   output copied into the task log (`jobtail.runner.capture`), each in a sandbox
   (`jobtail.runner.sandbox`) unless `executor_isolation` is "none". A sandboxed job that names
   no working directory gets one of its own, removed when the job is deleted.

A job whose annotations ask for restarts (`jobtail.core.faults`) runs in attempts. When an
attempt fails in a way that counts, its running record is closed with the first failure
(`JobRun.first_failure`) and `end_recover` `job_reschedule`, a platform line in each task log
says so, and after `backoff_seconds` every task starts again — same ranks, a new
`MASTER_PORT`, `JOBTAIL_ATTEMPT` one higher, appending to the same task logs — while the phase
stays Running. A job waiting for its restart keeps its task slots; terminating or deleting it
meanwhile wins (it becomes Terminated, or nothing more is written). A job none of whose tasks
printed for `hang_timeout_seconds` is hung (`jobtail.runner.hangs`): an event and a line in each
log say so, and with `fault-tolerance/hang-retry` it is stopped and restarted (Failed when no
attempt is left); a task silent that long while the others print gets a warning event.

When a job has ended, its task logs are copied where `spec.log_export_path` asks
(`jobtail.runner.export`).

`stop()` (server shutdown) stops every running job (SIGTERM, SIGKILL after
`terminate_grace_seconds`) and marks it Abnormal; jobs still queued go back to Creating.

Given `leases` (replicas sharing a PostgreSQL database), each round first renews this executor's
lease and ends the jobs of peers that lost theirs (`jobtail.runner.leases`); an executor that
finds its own lease lost stops its jobs without writing anything and carries on as a new owner.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from jobtail import metrics
from jobtail.core.errors import JobNotFound, JobtailError
from jobtail.core.faults import HANG, LOST, RESCHEDULED, Failure, backoff_seconds
from jobtail.core.jobs import (
    ABNORMAL,
    ACTIVE,
    COMPLETED,
    CREATING,
    FAILED,
    PENDING,
    RUNNING,
    TERMINATED,
    TERMINATING,
    JobService,
)
from jobtail.core.store import LogStore
from jobtail.core.types import JobRecord, LogPosition, TaskRef, TaskStatus
from jobtail.runner import job_run
from jobtail.runner.capture import TaskCapture, platform_line
from jobtail.runner.environment import free_port, task_environment
from jobtail.runner.export import LogExporter, s3_endpoint_query
from jobtail.runner.hangs import HangWatch
from jobtail.runner.job_run import JobRun
from jobtail.runner.leases import ExecutorLeases, Fence, SharedLease
from jobtail.runner.owner import Lease, Owner
from jobtail.runner.process import TaskProcess
from jobtail.runner.recovery import RunRecords, mark_abnormal, recover, requeue, restart_lost
from jobtail.runner.sandbox import Sandbox, WorkingDirRefused
from jobtail.settings import Settings

log = logging.getLogger("jobtail.runner")

POLL_SECONDS = 0.25
LEASE_RETRY_SECONDS = 1.0
SHUTDOWN_SLACK = 10.0  # seconds past the grace period that shutdown waits for output

_FINAL = {None: (COMPLETED, "Training job completed.", "Info"),
          job_run.FAILED: (FAILED, "Training job failed.", "Error"),
          job_run.HANG: (FAILED, "Training job failed.", "Error"),
          job_run.TERMINATE: (TERMINATED, "Training job is terminated.", "Info"),
          job_run.SHUTDOWN: (ABNORMAL, "The jobtail server shut down while the job was running; "
                                       "its processes were stopped.", "Error")}


@dataclass
class PendingRestart:
    """A job between two attempts: the attempt that failed, why, and when the next one starts."""

    job: JobRecord
    failure: Failure
    statuses: tuple[TaskStatus, ...]
    due: float  # time.monotonic()


class LocalExecutor:
    """See the module docstring. `start()`, `wake()` and `stop()` are safe from any thread."""

    def __init__(self, jobs: JobService, logs: LogStore, settings: Settings,
                 leases: ExecutorLeases | None = None) -> None:
        self.jobs = jobs
        self.logs = logs
        self.cap = settings.max_running_tasks
        self.grace = settings.terminate_grace_seconds
        self.owner = Owner.current()
        self.lease = Lease(settings.data_dir / "runner" / "executor.lock")
        self.records = RunRecords(settings.data_dir / "runner")
        self.shared = SharedLease(leases, settings.owner_lease_seconds) if leases is not None else None
        self.fence = Fence()  # this owner's: always valid without shared leases
        self.hangs = HangWatch(logs, settings.hang_timeout_seconds)
        self.exporter = LogExporter(jobs, logs, settings.export_root_paths, settings.export_obs_url_list,
                                    s3_endpoint_query(settings.export_s3_endpoint, settings.blob_url))
        self.sandbox: Sandbox | None = None
        if settings.executor_isolation == "bwrap":  # else every task runs as the server does
            self.sandbox = Sandbox.for_settings(settings)  # SandboxUnavailable: the server does not start
            self.sandbox.check()
        self._runs: dict[str, JobRun] = {}
        self._restarts: dict[str, PendingRestart] = {}
        self._queue: list[JobRecord] = []  # claimed, Pending, oldest first
        self._waiting: set[str] = set()  # queued jobs told they wait for task slots
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._main, name="jobtail-executor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.grace + 2 * SHUTDOWN_SLACK)

    @property
    def running_tasks(self) -> int:
        return (sum(len(run.job.tasks) for run in self._runs.values())
                + sum(len(pending.job.tasks) for pending in self._restarts.values()))

    # -- the loop -------------------------------------------------------------------------------

    def _main(self) -> None:
        while not self.lease.try_acquire(self.owner):
            if self._stopping.wait(LEASE_RETRY_SECONDS):
                return
        try:
            while self.shared is not None and not self._begin_shared():
                if self._stopping.wait(LEASE_RETRY_SECONDS):
                    return
            self._guarded(lambda: recover(self.jobs, self.logs, self.records, self._adopt))
            self._guarded(self._sweep_job_dirs)
            if self.sandbox is not None:
                self._guarded(self.sandbox.sweep_shm)
            while not self._stopping.is_set():
                self._guarded(self._tick)
                self._wake.wait(POLL_SECONDS)
                self._wake.clear()
            self._guarded(self._shutdown)
            self.exporter.close()
            if self.shared is not None:
                self._guarded(self.shared.end)
        finally:
            self.lease.release()

    def _begin_shared(self) -> bool:
        assert self.shared is not None
        try:
            self.fence = self.shared.begin(str(self.owner), self.owner.host)
        except Exception:
            log.exception("could not register the executor lease; retrying")
            return False
        return True

    @staticmethod
    def _guarded(work: Callable[[], object]) -> None:
        try:
            work()
        except Exception:  # keep the executor alive; the next round retries
            log.exception("local executor round failed")

    def _tick(self) -> None:
        if self.shared is not None and not self._shared_round():
            return
        active = {job.id: job for job in self.jobs.in_phases(ACTIVE, "local")}
        for job in list(active.values()):
            if job.phase == CREATING:
                claimed = self.jobs.transition(job, PENDING, owner=str(self.owner))
                if claimed is not None:
                    self._queue.append(claimed)
                    active[job.id] = claimed
        self._watch(active)
        self._collect()
        if self.hangs.due():
            for run in list(self._runs.values()):
                self._check_hang(run)
        self._restart_due(active)
        self._start_queued()
        self.records.beat(self._runs)  # when each job was last known to run, should the server die
        metrics.executor_tasks(pending=sum(len(job.tasks) for job in self._queue), running=self.running_tasks)

    # -- shared leases (jobtail.runner.leases) -------------------------------------------------

    def _shared_round(self) -> bool:
        """Renew this executor's lease and end lost peers' jobs; False when this round must not
        go on (the lease was lost, or is unsettled)."""
        assert self.shared is not None
        if not self.shared.renew():
            self._lost_lease()
            return False
        if not self.fence.valid():
            return False  # the database does not answer: write nothing until it does
        for owner, host in self.shared.lost_peers():
            for job in self.jobs.in_phases((PENDING, RUNNING, TERMINATING), "local"):
                if job.owner == owner:
                    self._lost_job(job, owner, host)
            self.shared.ended(owner)
        return True

    def _lost_lease(self) -> None:
        """A peer took this executor's jobs over: stop them without writing, start afresh."""
        log.error("executor lease of %s lost: another replica ended its jobs; stopping %d of them without writing",
                  self.owner, len(self._runs))
        for run in self._runs.values():
            run.stop(job_run.DELETED)  # drops their output; nothing is written for them any more
        self._queue.clear()
        self._waiting.clear()
        self.owner = Owner.current()
        self._begin_shared()  # (retried next round if the database does not answer)

    def _lost_job(self, job: JobRecord, owner: str, host: str) -> None:
        """A job of an executor that lost its lease (on `host`): a queued one goes back to
        Creating; a Running one this executor takes over and restarts when its fault-tolerance
        annotations allow a restart after a lost runner, else it becomes Abnormal."""
        lost = Owner.parse(owner)
        who = lost.describe() if lost is not None else owner
        if job.phase == PENDING:
            requeue(self.jobs, job, f"the jobtail server on host {host} that queued it lost its executor lease ({who})")
            return
        seconds = self.shared.seconds if self.shared else 0
        message = (f"The jobtail server running this job on host {host} ({who}) did not renew its executor lease "
                   f"for {seconds:g} s; the job was taken for lost.")
        failure = Failure(LOST, "", f"the jobtail server running it on host {host} lost its executor lease ({who})")
        if not restart_lost(self.jobs, self.logs, job, message, failure, time.time() - seconds, self._adopt):
            mark_abnormal(self.jobs, self.logs, job, message)

    def _watch(self, active: dict[str, JobRecord]) -> None:
        for run in self._runs.values():
            current = active.get(run.job.id)
            if current is None or current.owner != str(self.owner):  # deleted, or no longer ours
                run.stop(job_run.DELETED)
            elif current.phase == TERMINATING:
                run.stop(job_run.TERMINATE)
        for job_id, pending in list(self._restarts.items()):
            current = active.get(job_id)
            if current is not None and current.owner == str(self.owner) and current.phase != TERMINATING:
                continue
            del self._restarts[job_id]
            self._release(pending.job, deleted=current is None)
            if current is not None and current.phase == TERMINATING:
                self._end(current, job_run.TERMINATE, pending.statuses)
        for job in list(self._queue):
            current = active.get(job.id)
            if current is None or current.owner != str(self.owner) or current.phase != PENDING:
                self._queue.remove(job)
                if current is not None and current.phase == TERMINATING:
                    done = self.jobs.transition(current, TERMINATED)
                    if done is not None:
                        self.jobs.event(done, "Training job is terminated.")

    def _collect(self) -> None:
        for run in list(self._runs.values()):
            for task in run.poll():
                self._task_event(run, task)
            if run.done:
                self._finish(run)

    def _task_event(self, run: JobRun, task: job_run.TaskRun) -> None:
        if run.writes and task.exit is not None and self.fence.valid():
            verb = "stopped" if task.stopped else "finished"
            level = "Info" if task.exit.code == 0 else ("Warning" if task.stopped else "Error")
            self.jobs.event(run.job, f"[{task.name}] Training {verb}. Exit code {task.exit.code}.", level, "Task")

    def _finish(self, run: JobRun) -> None:
        if run.writes and not self.fence.valid():
            return  # the lease is unsettled (a stopped process resuming): the next round decides
        del self._runs[run.job.id]
        self.records.remove(run.job.id)
        if not run.writes:
            self._release(run.job, deleted=True)
            return
        failure = run.first_failure(self.logs)
        policy = self.jobs.fault_policy(run.job)
        if failure is not None and policy.restarts(failure.kind, run.attempt) and not self._stopping.is_set():
            self._restart_later(run, failure, backoff_seconds(run.attempt))
            return
        self._release(run.job, deleted=False)
        self._end(run.job, run.reason, run.statuses(), failure)

    def _end(self, job: JobRecord, reason: str | None, statuses: tuple[TaskStatus, ...],
             failure: Failure | None = None) -> None:
        """Close the job's last attempt and give it its final phase for `reason`."""
        phase, message, level = _FINAL[reason]
        if failure is not None:
            message = f"{message.removesuffix('.')}: {failure.because()}."
        closed = self.jobs.end_attempt(job, time.time(), failure.reason if failure else phase,
                                       failure.task if failure else "")
        final = self.jobs.transition(closed or job, phase, expected=(RUNNING, TERMINATING), task_statuses=statuses)
        if final is None:
            log.warning("job %s changed while it ended; not marking it %s", job.id, phase)
            return
        self.jobs.event(final, message, level)
        self.exporter.export(final)  # spec.log_export_path: every attempt's output, now that there is no more

    def _release(self, job: JobRecord, *, deleted: bool) -> None:
        if self.sandbox is not None:
            self.sandbox.release(job.project_id, job.id, deleted=deleted)

    def _check_hang(self, run: JobRun) -> None:
        hung, silent = self.hangs.check(run)
        timeout = f"{self.hangs.timeout:g}"
        for task in silent:
            self.jobs.event(run.job, f"[{task}] Has printed nothing for {timeout} s while other tasks still print "
                                     "(a stuck rank?).", "Warning", "Task")
        if not hung:
            return
        policy = self.jobs.fault_policy(run.job)
        restarts = policy.restarts(HANG, run.attempt)
        then = "; stopping it to restart" if restarts else ""
        self.jobs.event(run.job, f"Training job is hung: no task has printed for {timeout} s{then}.", "Warning")
        line = platform_line(f"the job is hung: no task has printed for {timeout} s{then}", "WARN")
        for each in run.tasks:
            try:
                self.logs.append_line(each.capture.ref, line)
            except JobtailError:  # deleted meanwhile: the next round stops the run
                log.warning("could not note the hang in %s", each.capture.ref)
        if restarts or (policy.hang_retry and policy.retries):  # hang-retry, no attempt left: the job fails
            run.failure = Failure(HANG, "", f"no task printed for {timeout} s")
            run.stop(job_run.HANG)

    # -- restarts -------------------------------------------------------------------------------

    def _restart_later(self, run: JobRun, failure: Failure, delay: float) -> None:
        """Close the failed attempt and schedule the next one `delay` seconds from now."""
        closed = self.jobs.end_attempt(run.job, time.time(), failure.reason, failure.task, RESCHEDULED)
        if closed is None:  # no longer ours
            self._release(run.job, deleted=False)
            return
        line = platform_line(f"attempt {run.attempt} ended: {failure.because()}; restarting in {delay:g}s", "WARN")
        for task in run.job.tasks:
            try:
                self.logs.append_line(TaskRef(run.job.project_id, run.job.id, task), line)
            except JobNotFound:
                self._release(run.job, deleted=True)
                return
        self._restarts[run.job.id] = PendingRestart(closed, failure, run.statuses(), time.monotonic() + delay)

    def _adopt(self, job: JobRecord, failure: Failure, ended_at: float) -> bool:
        """Take over a Running job whose runner died (recovery) and schedule its next attempt."""
        adopted = self.jobs.transition(job, RUNNING, expected=(RUNNING,), owner=str(self.owner))
        if adopted is None:
            return False
        closed = self.jobs.end_attempt(adopted, ended_at, failure.reason, failure.task, RESCHEDULED) or adopted
        delay = backoff_seconds(max(1, len(job.running_records)))
        self._restarts[job.id] = PendingRestart(closed, failure, (), time.monotonic() + delay)
        return True

    def _restart_due(self, active: dict[str, JobRecord]) -> None:
        now = time.monotonic()
        for job_id, pending in list(self._restarts.items()):
            if pending.due > now or self._stopping.is_set():
                continue
            del self._restarts[job_id]
            current = active.get(job_id, pending.job)
            self._start_attempt(current, because=pending.failure.because())

    def _start_queued(self) -> None:
        while self._queue and not self._stopping.is_set():
            job = self._queue[0]
            running = self.running_tasks
            if running and running + len(job.tasks) > self.cap:
                if job.id not in self._waiting:
                    self._waiting.add(job.id)
                    self.jobs.event(job, f"Training job is waiting: {running} of {self.cap} task slots are in use.")
                return
            self._queue.pop(0)
            self._waiting.discard(job.id)
            self._launch(job)

    # -- starting a job -------------------------------------------------------------------------

    def _launch(self, job: JobRecord) -> None:
        running = self.jobs.transition(job, RUNNING)
        if running is None:  # terminated or deleted since we looked: the next round sees it
            return
        self.jobs.event(running, "Training job is running.")
        self._start_attempt(running)

    def _start_attempt(self, job: JobRecord, because: str = "") -> None:
        """Start every task of the job's next attempt (`because` the last one failed so)."""
        attempt = len(job.running_records) + 1
        attempts = self.jobs.fault_policy(job).attempts
        try:
            states = {task: self.logs.state(TaskRef(job.project_id, job.id, task)) for task in job.tasks}
            starts = {task: LogPosition(state.end_offset, state.line_count + 1) for task, state in states.items()}
            started = self.jobs.begin_attempt(job, time.time(), starts)
        except JobNotFound:
            started = None
        if started is None:  # deleted, or no longer ours: the next round sees it
            self._release(job, deleted=True)
            return
        if because:
            self.jobs.event(started, f"Training job restarted (attempt {attempt} of {attempts}) because {because}.",
                            "Warning")
        run = self._runs[job.id] = JobRun(started, self.grace, attempt, starts)
        algorithm = started.document.get("algorithm") or {}
        command = str(algorithm.get("command") or "")
        cwd = algorithm.get("working_dir") or None
        port = free_port()
        attempt_note = f", attempt {attempt} of {attempts}" if attempts > 1 else ""  # a job that may restart
        try:
            for index in range(len(started.tasks)):
                if not self._start_task(run, index, command, cwd, port, attempt_note):
                    break
        except JobNotFound:
            run.stop(job_run.DELETED)
        except Exception as exc:  # the database failed us mid-start: fail the job, stop what started
            log.exception("starting job %s failed", started.id)
            run.stop(job_run.FAILED)
            self.jobs.event(started, f"Could not start the job: {exc}", "Error")

    def _start_task(self, run: JobRun, index: int, command: str, cwd: str | None, port: int, attempt: str) -> bool:
        """Start task `index` of the run; False when it could not be started (the run then fails)."""
        job, task = run.job, run.job.tasks[index]
        capture = TaskCapture(self.logs, TaskRef(job.project_id, job.id, task), self.fence)
        try:
            places = None
            if self.sandbox is not None:
                if cwd:
                    cwd = str(self.sandbox.working_dir(cwd))
                places = self.sandbox.places(job.project_id, job.id, own_dir=not cwd)
                cwd = str(places.own_dir or cwd)  # the job's own directory, for its tasks only
            capture.write(platform_line(f"{task} started (RANK {index} of {len(job.tasks)}, MASTER_PORT {port}"
                                        f"{attempt}) in {cwd or os.getcwd()}: {command}"))
            env = task_environment(job, index, port, sandboxed=self.sandbox is not None, attempt=run.attempt)
            process = TaskProcess.spawn(command, env=env, cwd=cwd, output_fd=capture.write_fd, grace_seconds=self.grace,
                                        sandbox=self.sandbox, places=places)
        except (OSError, ValueError, WorkingDirRefused) as exc:  # a missing working_dir; a NUL the kernel or bwrap refuses
            run.not_started(task, capture, str(exc))
            self.jobs.event(job, f"[{task}] Could not start: {exc}.", "Error", "Task")
            return False
        except BaseException:
            capture.finish(b"")  # closes its pipe
            raise
        capture.close_write_end()
        capture.start()
        run.started(task, capture, process)
        self.records.write(job.id, self.owner, run.sessions())
        self.jobs.event(job, f"[{task}] Training started.", source="Task")
        return True

    def _sweep_job_dirs(self) -> None:
        """Remove the directories of sandboxed jobs deleted while no executor ran them."""
        if self.sandbox is None or not self.sandbox.work_root.is_dir():
            return
        for project in self.sandbox.work_root.iterdir():
            if project.name.startswith(".") or not project.is_dir():
                continue
            for job_dir in project.iterdir():
                try:
                    self.jobs.get(project.name, job_dir.name)
                except JobNotFound:
                    shutil.rmtree(job_dir, ignore_errors=True)

    # -- shutdown -------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        for run in self._runs.values():
            run.stop(job_run.SHUTDOWN)
        deadline = time.monotonic() + self.grace + SHUTDOWN_SLACK
        while self._runs and time.monotonic() < deadline:
            self._guarded(self._collect)
            time.sleep(0.05)
        for run in list(self._runs.values()):  # output still not in: record what is known
            run.abandon()
            self._guarded(lambda: self._finish(run))  # noqa: B023
        for pending in self._restarts.values():
            self._release(pending.job, deleted=False)
            self._guarded(lambda: self._end(pending.job, job_run.SHUTDOWN, pending.statuses))  # noqa: B023
        self._restarts.clear()
        for job in self._queue:
            requeued = self.jobs.transition(job, CREATING, owner=None)
            if requeued is not None:
                self.jobs.event(requeued, "Training job is queued again: the jobtail server that queued it shut down.",
                                "Warning")
        self._queue.clear()
