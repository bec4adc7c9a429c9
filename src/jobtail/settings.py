"""Settings: one set of names for CLI flags, `JOBTAIL_*` environment variables and fields.

`jobtail serve --seal-bytes N`, `JOBTAIL_SEAL_BYTES=N` and `Settings(seal_bytes=N)` are the same
setting; the CLI builds its flags from the fields below (see `jobtail.cli.options`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobtail.core.blob_store import s3_bucket_and_prefix
from jobtail.core.errors import InvalidJob
from jobtail.core.ids import MAX_PROJECT_ID_CHARS
from jobtail.core.log_export import PROJECT_PLACEHOLDER, parse_obs_url

MiB = 1024 * 1024


def redact_url(url: str) -> str:
    """`url` with any password in it replaced by `***`, for printing (`postgresql://u:***@host/db`)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _check_export_obs_url(entry: str, blob_url: str) -> None:
    """Refuse an `export_obs_urls` entry that is no obs:// or s3:// URL (for the longest project
    id too), has `{project_id}` in its bucket, or could reach the segment store's own objects
    (the part of its prefix before `{project_id}` counts: a project could be named after what
    follows)."""
    bucket_part, _, raw_prefix = entry.partition("://")[2].partition("/")
    if PROJECT_PLACEHOLDER in bucket_part:
        raise ValueError(f"export obs URL {entry[:128]!r}: {PROJECT_PLACEHOLDER} may stand in the prefix only")
    try:
        bucket, prefix = parse_obs_url(entry.replace(PROJECT_PLACEHOLDER, "p" * MAX_PROJECT_ID_CHARS))
    except InvalidJob as exc:
        raise ValueError(f"export obs URL {entry[:128]!r}: {exc.reason}") from None
    if PROJECT_PLACEHOLDER in raw_prefix:
        prefix = raw_prefix.partition(PROJECT_PLACEHOLDER)[0].lstrip("/")
    if urlsplit(blob_url).scheme != "s3":
        return
    segment_bucket, segments = s3_bucket_and_prefix(blob_url)
    if segment_bucket == bucket and (segments.startswith(prefix) or prefix.startswith(segments)):
        raise ValueError(f"export obs URL {entry[:128]!r} may not reach the segment store ({redact_url(blob_url)})")


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "jobtail"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JOBTAIL_", extra="forbid", validate_default=True)

    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port to listen on (0 picks a free one).")
    workers: int = Field(1, ge=1, le=64, description="Server processes.")
    data_dir: Path = Field(default_factory=default_data_dir, description="Directory for the embedded database and blobs.")
    database_url: str = Field("", description="Metadata database: sqlite:///PATH or postgresql://… [default: DATA_DIR/jobtail.db]")
    blob_url: str = Field("", description="Segment storage: file:///DIR, s3://BUCKET/PREFIX?endpoint=URL&region=R or memory:// [default: DATA_DIR/blobs]")
    master_key_file: str = Field(
        "", description="Key from which every secret key is derived; replicas share it, replacing it voids every AK/SK "
        "[default: DATA_DIR/master.key, created on first use]"
    )
    public_url: str = Field(
        "", description="Base URL clients reach this server at, for temporary log links [default: from each request]"
    )
    max_body_bytes: int = Field(16 * MiB, ge=1, description="Largest accepted request body, in bytes.")
    max_unverified_body_reads: int = Field(
        8, ge=1, description="Request bodies read at once, per process, for callers whose signature covers the body "
        "(or who log in); one more gets 429."
    )
    max_log_bytes: int = Field(0, ge=0, description="Largest a task log may grow through appends, in bytes (0: no cap).")
    rate_limit_per_second: float = Field(
        200.0, ge=0, description="Requests per second one credential may make (0: no limit): per process on SQLite, "
        "across the replicas sharing a PostgreSQL database."
    )
    search_budget_seconds: float = Field(10.0, gt=0, description="Longest a search scans before answering with a cursor.")
    preview_bytes: int = Field(5 * MiB, ge=1, le=5 * MiB, description="Preview cap in bytes (ModelArts: 5 MiB).")
    seal_bytes: int = Field(8 * MiB, ge=1, description="Seal a task log's head into a segment at this size.")
    seal_idle_seconds: float = Field(30.0, gt=0, description="Seal a head that has not grown for this long.")
    preview_cache_bytes: int = Field(256 * MiB, ge=0, description="Memory for encoded previews of unchanged logs, per process.")
    segment_cache_bytes: int = Field(
        1024 * MiB, ge=0, description="Local disk (DATA_DIR/segment-cache, shared by the workers) for copies of sealed "
        "segments read from a remote blob store (s3://), least recently used evicted first (0: no cache)."
    )
    orphan_grace_seconds: float = Field(3600.0, ge=0, description="Unrecorded blobs older than this are swept.")
    retention_days: float = Field(
        30.0, ge=0, description="Drop sealed log segments older than this many days, as ModelArts keeps history for 30 (0: keep forever)."
    )
    max_streams_per_principal: int = Field(32, ge=1, description="Live follow streams one caller may hold open at once, per process.")
    stream_heartbeat_seconds: float = Field(15.0, gt=0, description="A follow stream with nothing to send sends a heartbeat comment this often.")
    follow_poll_seconds: float = Field(0.25, gt=0, le=60, description="How often each process looks for appends made by other processes, for its followers.")
    metrics_access: Literal["loopback", "admin", "open"] = Field(
        "loopback", description="Who may read /metrics: loopback (callers on this host that no proxy forwarded, and "
        "admins), admin (a credential with the admin role in the project named by X-Project-Id) or open (anyone)."
    )
    log_level: str = Field("info", description="Server log level: debug, info, warning, error.")
    executor: Literal["local", "none"] = Field(
        "local", description="Who runs created jobs: local (processes on this machine) or none (they run elsewhere and ship logs)."
    )
    max_running_tasks: int = Field(8, ge=1, description="Local executor: tasks running at once; further jobs wait as Pending.")
    terminate_grace_seconds: float = Field(10.0, ge=0, description="Local executor: SIGTERM to SIGKILL delay when stopping a job.")
    owner_lease_seconds: float = Field(
        30.0, ge=2, description="Local executor on a shared (PostgreSQL) database: a replica that has not renewed its executor "
        "lease for this long is taken for lost; another marks its jobs Abnormal, and it stops them without writing if it comes back."
    )
    executor_isolation: Literal["bwrap", "none"] = Field(
        "bwrap", description="Local executor: bwrap (each task in a bubblewrap sandbox that cannot see the data directory, "
        "the master key, the database, other jobs or the server) or none (tasks run as the server does: one tenant only)."
    )
    executor_shared_dirs: str = Field(
        "", description="Local executor, bwrap: host directories (separated by ':') every task sees read-write, e.g. code or "
        "data sets; a job's algorithm.working_dir must lie in one [default: none; a job runs in a directory of its own]"
    )
    hang_timeout_seconds: float = Field(
        1800.0, ge=0, description="Local executor: a running job none of whose tasks printed for this long is hung (an event, "
        "a line in each log; restarted with the fault-tolerance/hang-retry annotation); a task silent this long "
        "while others print gets a warning (0: off)."
    )
    export_roots: str = Field(
        "", description="Directories, separated by ':', under which a job's spec.log_export_path.host_path may lie "
        "(its task logs are copied there when it ends) [default: none; host_path is refused]"
    )
    export_obs_urls: str = Field(
        "", description="obs:// or s3:// URLs, separated by ',', under which a job's spec.log_export_path.obs_url may "
        "lie (written with the server's S3 credentials); {project_id} in one stands for the job's project, e.g. "
        "s3://logs/{project_id}/ [default: none; obs_url is refused]"
    )
    export_s3_endpoint: str = Field(
        "", description="S3 endpoint for spec.log_export_path.obs_url exports (obs:// or s3://), credentials from boto3's "
        "chain as for segments [default: --blob-url's endpoint and region when it is s3://…, else AWS S3]"
    )

    @model_validator(mode="after")
    def _fill_urls(self) -> Settings:
        self.data_dir = self.data_dir.expanduser()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'jobtail.db'}"
        if not self.blob_url:
            self.blob_url = (self.data_dir.resolve() / "blobs").as_uri()
        if not self.master_key_file:
            self.master_key_file = str(self.data_dir / "master.key")
        data_dir = Path(os.path.realpath(self.data_dir))  # as the files are reached: through symlinks
        for root in (Path(os.path.realpath(r)) for r in self.export_root_paths):
            if root == Path("/") or root == data_dir or data_dir in root.parents or root in data_dir.parents:
                raise ValueError(f"export root {root} may not be / nor hold or lie in the data directory")
        for entry in self.export_obs_url_list:
            _check_export_obs_url(entry, self.blob_url)
        return self

    @property
    def export_obs_url_list(self) -> tuple[str, ...]:
        """`export_obs_urls` as a list of URLs."""
        return tuple(entry.strip() for entry in self.export_obs_urls.split(",") if entry.strip())

    @property
    def export_root_paths(self) -> tuple[Path, ...]:
        """`export_roots` as absolute, normalised paths (as written: symlinks are resolved when writing)."""
        entries = (entry.strip() for entry in self.export_roots.split(os.pathsep))
        return tuple(Path(os.path.normpath(os.path.abspath(os.path.expanduser(e)))) for e in entries if e)
