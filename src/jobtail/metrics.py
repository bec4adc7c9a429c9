"""The server's Prometheus metrics: one registry, the calls that move them, and `/metrics`' text.

Every metric of jobtail is declared here (the README's "Metrics" table lists them); the layers
report through the small functions below, one call at each place, and `core` through the
`StoreObserver` it defines (`STORE` implements it). Metrics are created on first use, so that
`jobtail serve` can choose the mode before: with `--workers N` > 1, `prepare_multiprocess` points
prometheus-client's multiprocess mode at an emptied directory under the data directory, each
worker writes its values to files there, and `/metrics` in any worker sums them all.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SEAL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def prepare_multiprocess(directory: Path) -> None:
    """Before the workers start: empty `directory` and have every process of this server (they
    inherit the environment) keep its metrics there. Call it before any metric is used."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, mode=0o700)
    os.environ[MULTIPROC_ENV] = str(directory)


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Histogram(
            "jobtail_http_request_duration_seconds",
            "Requests by operation and status: seconds from arrival to the response's status line (_count: requests).",
            ["operation", "status"], buckets=_LATENCY_BUCKETS)
        self.ingested_bytes = Counter("jobtail_ingested_bytes", "Log bytes stored by appends (repeats not counted).")
        self.appends = Counter("jobtail_appends", "Appends that stored bytes.")
        self.seals = Histogram("jobtail_seal_duration_seconds",
                               "Seconds to write and record one segment (_count: segments sealed).",
                               buckets=_SEAL_BUCKETS)
        self.sealed_bytes = Counter("jobtail_sealed_bytes", "Log bytes moved from heads into segments.")
        self.follow_streams = Gauge("jobtail_follow_streams", "Live follow streams open.",
                                    multiprocess_mode="livesum")
        self.preview_cache = Counter("jobtail_preview_cache_lookups", "Encoded-preview cache lookups.", ["result"])
        self.segment_cache = Counter("jobtail_segment_cache_blocks",
                                     "Segment read cache: 1 MiB blocks found on local disk or fetched.", ["result"])
        self.executor_tasks = Gauge("jobtail_executor_tasks", "Local executor's tasks by phase.", ["phase"],
                                    multiprocess_mode="livesum")
        self.lockouts = Counter("jobtail_lockouts", "Lockouts begun after repeated failures.", ["kind"])
        self.refusals = Counter("jobtail_limit_refusals", "Requests refused with 429 by a limit.", ["limit"])
        self._children: dict[tuple[str, int], Any] = {}

    def request(self, operation: str, status: int) -> Any:
        child = self._children.get((operation, status))
        if child is None:
            child = self._children[(operation, status)] = self.requests.labels(operation, str(status))
        return child


_metrics: _Metrics | None = None
_creating = threading.Lock()


def _get() -> _Metrics:
    global _metrics
    if _metrics is None:
        with _creating:
            if _metrics is None:
                _metrics = _Metrics()
    return _metrics


# -- what the layers call ---------------------------------------------------------------------


def observe_request(operation: str, status: int, seconds: float) -> None:
    (_metrics or _get()).request(operation, status).observe(seconds)


def follow_stream_opened() -> None:
    _get().follow_streams.inc()


def follow_stream_closed() -> None:
    _get().follow_streams.dec()


def refused(limit: str) -> None:
    """A 429 from `limit`: "requests" (the per-credential rate), "streams", "bodies"."""
    _get().refusals.labels(limit).inc()


def locked_out(kind: str) -> None:
    """A lockout began: `kind` "access_key" (signatures) or "password" (logins)."""
    _get().lockouts.labels(kind).inc()


def executor_tasks(pending: int, running: int) -> None:
    tasks = _get().executor_tasks
    tasks.labels("pending").set(pending)
    tasks.labels("running").set(running)


def segment_cache_lookup(hit: bool, blocks: int) -> None:
    _get().segment_cache.labels("hit" if hit else "miss").inc(blocks)


class _StoreMetrics:
    """`jobtail.core.observer.StoreObserver` onto the registry."""

    def appended(self, nbytes: int) -> None:
        m = _metrics or _get()
        m.appends.inc()
        m.ingested_bytes.inc(nbytes)

    def sealed(self, nbytes: int, seconds: float) -> None:
        m = _get()
        m.seals.observe(seconds)
        m.sealed_bytes.inc(nbytes)

    def preview_cache(self, hit: bool) -> None:
        _get().preview_cache.labels("hit" if hit else "miss").inc()


STORE = _StoreMetrics()


def render() -> tuple[bytes, str]:
    """The text exposition of every metric (of every worker, in multiprocess mode) and its
    content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    _get()
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def process_exiting() -> None:
    """A worker is stopping: its live gauges (open streams, executor tasks) stop counting."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory and _metrics is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]
