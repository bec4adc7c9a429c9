"""Rules of log export (ModelArts `spec.log_export_path`): where a job may ask its logs to go.

`host_path` is a directory on the server's machine; it must lie in one of the export roots the
operator allows (`--export-roots`; none by default, so `host_path` is refused). `obs_url` is
`obs://BUCKET/PREFIX` or `s3://BUCKET/PREFIX` (OBS speaks S3); the server writes it with its own
S3 credentials, so it must lie under one of the URLs the operator allows (`--export-obs-urls`;
none by default, so `obs_url` is refused), where `{project_id}` stands for the job's project:
with `s3://logs/{project_id}/` each project exports under its own prefix and no other's. Each
task's whole log is copied there as `modelarts-job-<job id>-<task id>.log`, ModelArts' name for
it. These are checked when the job is created; the copy itself is the executor's
(`jobtail.runner.export`), which checks both again as it writes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from jobtail.core.errors import InvalidJob
from jobtail.core.types import LogExport

HOST_PATH, OBS_URL = "log_export_path.host_path", "log_export_path.obs_url"
PROJECT_PLACEHOLDER = "{project_id}"
SCHEMES = ("obs", "s3")
MAX_PATH_CHARS = 1024
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def export_name(job_id: str, task_id: str) -> str:
    """The exported file's (or object's) name, as ModelArts names it."""
    return f"modelarts-job-{job_id}-{task_id}.log"


def parse_obs_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of `obs://BUCKET[/PREFIX]` or `s3://…`; the prefix ends with `/` unless
    empty. InvalidJob(OBS_URL) for anything else."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise InvalidJob(OBS_URL, f"Use obs://BUCKET/PREFIX or s3://BUCKET/PREFIX; the scheme of {url[:64]!r} "
                                  "is not supported.")
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise InvalidJob(OBS_URL, f"{bucket[:64]!r} is not a bucket name (3-63 lowercase letters, digits, '.', '-').")
    if len(url) > MAX_PATH_CHARS or "\0" in prefix or any(part in (".", "..") for part in prefix.split("/")):
        raise InvalidJob(OBS_URL, "The prefix is too long, holds a NUL, or a '.' or '..' segment.")
    prefix = prefix.strip("/")
    return bucket, prefix + "/" if prefix else ""


def place_in_buckets(obs_url: str, allowed: Sequence[str], project_id: str) -> tuple[str, str]:
    """(bucket, prefix) of `obs_url` if it lies under one of the `allowed` URLs (`{project_id}`
    in one's prefix standing for `project_id`, a ModelArts project id; the scheme does not
    count), prefixes compared by whole segments (`s3://logs/team` does not allow
    `s3://logs/team-2/`); InvalidJob(OBS_URL) otherwise."""
    bucket, prefix = parse_obs_url(obs_url)
    if not allowed:
        raise InvalidJob(OBS_URL, "This server exports no logs to object storage (the operator allows buckets "
                                  "with --export-obs-urls).")
    for entry in allowed:  # `{project_id}` stands in prefixes only (`Settings` checks the entries)
        allowed_bucket, allowed_prefix = parse_obs_url(entry.replace(PROJECT_PLACEHOLDER, project_id))
        if bucket == allowed_bucket and prefix.startswith(allowed_prefix):
            return bucket, prefix
    raise InvalidJob(OBS_URL, f"{obs_url[:128]} lies outside the buckets and prefixes this server exports logs to.")


def place_in_roots(host_path: str, roots: Sequence[Path]) -> tuple[Path, PurePosixPath]:
    """(root, path below it) of `host_path` (absolute, normalised as written; symlinks are the
    writer's to refuse), if it lies in one of `roots`; InvalidJob(HOST_PATH) otherwise."""
    if not roots:
        raise InvalidJob(HOST_PATH, "This server exports no logs to host paths (the operator allows directories "
                                    "with --export-roots).")
    if not host_path.startswith("/") or "\0" in host_path or len(host_path) > MAX_PATH_CHARS:
        raise InvalidJob(HOST_PATH, "It must be an absolute path without NUL characters.")
    path = PurePosixPath(os.path.normpath(host_path))
    for root in roots:
        if path == PurePosixPath(root) or PurePosixPath(root) in path.parents:
            return root, path.relative_to(root)
    raise InvalidJob(HOST_PATH, f"{host_path[:128]} lies outside the directories this server exports logs to.")


def check_log_export(export: LogExport, project_id: str, roots: Sequence[Path], obs_urls: Sequence[str]) -> None:
    """Refuse (InvalidJob naming the field) a destination jobtail cannot or may not write to for
    a job of `project_id`."""
    if export.obs_url:
        place_in_buckets(export.obs_url, obs_urls, project_id)
    if export.host_path:
        place_in_roots(export.host_path, roots)
