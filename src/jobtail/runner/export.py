"""Log export (ModelArts `spec.log_export_path`): when a job has ended, each task's whole log —
every attempt — is copied to the job's `host_path` and/or `obs_url` as
`modelarts-job-<job id>-<task id>.log`, streamed from the log store (memory bounded by one S3
part, 8 MiB), in a thread of its own so the executor never waits for it.

- `host_path` must lie in one of `--export-roots` (checked at create, `jobtail.core.log_export`,
  and again here). Directories below the root are created one at a time, never through a
  symlink (`O_NOFOLLOW`, relative to the parent's descriptor), so a task that plants a link in
  a shared directory cannot redirect the write; the file is written under a temporary name
  and renamed into place, mode 0640.
- `obs_url` must lie under one of `--export-obs-urls` (checked at create and again here: the
  server writes with its own credentials). It goes through the S3 blob backend
  (`jobtail.blobs.s3`: a streamed multipart upload, aborted on failure, so an object is there
  whole or not at all), at `--export-s3-endpoint`, or the endpoint and region of an `s3://`
  `--blob-url`, or AWS S3; credentials from boto3's chain.

Each copy is tried `TRIES` times, `RETRY_FIRST_SECONDS` apart and doubling; an event says where
the log went (and its size) or why it could not.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from jobtail.blobs import open_blobs
from jobtail.core.jobs import JobService
from jobtail.core.log_export import export_name, parse_obs_url, place_in_buckets, place_in_roots
from jobtail.core.store import LogStore
from jobtail.core.types import JobRecord, TaskRef

log = logging.getLogger("jobtail.runner")

TRIES = 4
RETRY_FIRST_SECONDS = 1.0
JOIN_SECONDS = 30.0  # how long shutdown waits for exports still running


def write_in_root(root: Path, below: PurePosixPath, name: str, chunks: Iterable[bytes]) -> int:
    """Write `chunks` to `root/below/name` without following a symlink below `root`; returns
    the bytes written. OSError (ELOOP, ENOTDIR for a link) when it cannot."""
    directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in below.parts:
            try:
                os.mkdir(part, 0o755, dir_fd=directory)
            except FileExistsError:
                pass
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=directory)
            os.close(directory)
            directory = inner
        temporary = f".{name}.{secrets.token_hex(4)}.part"
        out = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640, dir_fd=directory)
        written = 0
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view):]
                written += len(chunk)
            os.fsync(out)
        except BaseException:
            os.close(out)
            os.unlink(temporary, dir_fd=directory)
            raise
        os.close(out)
        os.rename(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
        return written
    finally:
        os.close(directory)


def s3_endpoint_query(export_endpoint: str, blob_url: str) -> dict[str, str]:
    """The `endpoint`/`region`/`addressing_style` of an export S3 URL (module docstring)."""
    if export_endpoint:
        return {"endpoint": export_endpoint}
    parts = urlsplit(blob_url)
    if parts.scheme != "s3":
        return {}
    return {k: v[-1] for k, v in parse_qs(parts.query).items() if k in ("endpoint", "region", "addressing_style")}


class LogExporter:
    """Exports ended jobs' logs (module docstring). `export()` is safe from any thread."""

    def __init__(self, jobs: JobService, logs: LogStore, roots: Sequence[Path], obs_urls: Sequence[str],
                 s3_query: dict[str, str]) -> None:
        self.jobs = jobs
        self.logs = logs
        self.roots = tuple(roots)
        self.obs_urls = tuple(obs_urls)
        self.s3_query = dict(s3_query)
        self.retry_first_seconds = RETRY_FIRST_SECONDS
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    def export(self, job: JobRecord) -> None:
        """Copy the job's task logs where it asked, if it did, in the background."""
        target = self.jobs.log_export(job)
        if not (target.host_path or target.obs_url):
            return
        thread = threading.Thread(target=self._export, args=(job, target.host_path, target.obs_url),
                                  name=f"jobtail-export-{job.id}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def close(self) -> None:
        """Stop retrying; wait a while for copies in progress."""
        self._stopping.set()
        deadline = time.monotonic() + JOIN_SECONDS
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _export(self, job: JobRecord, host_path: str, obs_url: str) -> None:
        for task in job.tasks:
            name = export_name(job.id, task)
            ref = TaskRef(job.project_id, job.id, task)
            if host_path:
                self._try(job, task, f"{host_path.rstrip('/')}/{name}", partial(self._to_host, ref, host_path, name))
            if obs_url:
                bucket, prefix = parse_obs_url(obs_url)
                where = f"{obs_url.split('://')[0]}://{bucket}/{prefix}{name}"
                self._try(job, task, where, partial(self._to_s3, ref, obs_url, name))

    def _try(self, job: JobRecord, task: str, where: str, copy: Callable[[], int]) -> None:
        delay, error = self.retry_first_seconds, ""
        for attempt in range(1, TRIES + 1):
            try:
                size = copy()
            except Exception as exc:  # a full disk, a refused path, the object store away: retry, then say so
                error = f"{type(exc).__name__}: {exc}"
                log.warning("exporting %s of job %s to %s failed (try %d): %s", task, job.id, where, attempt, error)
                if attempt == TRIES or self._stopping.wait(delay):
                    break
                delay *= 2
                continue
            self.jobs.event(job, f"[{task}] Log exported to {where} ({size} bytes).", source="Task")
            return
        self.jobs.event(job, f"[{task}] Log export to {where} failed: {error[:300]}", "Error", "Task")

    def _chunks(self, ref: TaskRef) -> Iterable[bytes]:
        state = self.logs.state(ref)
        return self.logs.read(state, state.start_offset, state.end_offset)

    def _to_host(self, ref: TaskRef, host_path: str, name: str) -> int:
        root, below = place_in_roots(host_path, self.roots)
        return write_in_root(root, below, name, self._chunks(ref))

    def _to_s3(self, ref: TaskRef, obs_url: str, name: str) -> int:
        bucket, prefix = place_in_buckets(obs_url, self.obs_urls, ref.project_id)
        query = f"?{urlencode(self.s3_query)}" if self.s3_query else ""
        store = open_blobs(f"s3://{bucket}/{quote(prefix)}{query}")
        try:
            return int(store.put(name, self._chunks(ref)))
        finally:
            store.close()
