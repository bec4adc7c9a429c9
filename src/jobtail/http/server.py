"""Running the app under uvicorn: process-level tuning and logging (the factory that workers
import is the CLI's, `jobtail.cli.server.app_from_env`, which knows how services are opened)."""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import signal
from typing import Any

import uvicorn
import uvicorn.config

from jobtail import metrics
from jobtail.settings import Settings

log = logging.getLogger("jobtail")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_PR_SET_PDEATHSIG = 1
MMAP_BYTES = 32 * 1024 * 1024  # allocations this large are mapped on their own (see tune_malloc)
ARENAS = 1  # glibc's default is 8 per core: each thread pool thread that ever encoded a preview kept its own peak


def tune_malloc() -> bool:
    """Keep freed preview-sized buffers in the heap instead of returning them to the kernel.

    glibc mmaps every allocation over 128 KiB-32 MiB and unmaps it on free, so each preview
    would pay fresh page faults for its ~25 MiB of buffers (~4 µs per page here). Raising the
    mmap and trim thresholds lets those pages be reused: previews got 2.5-3.6x cheaper on this
    machine (README, architecture notes). The cost is that RSS stays at its peak, so the arenas
    are capped at ARENAS: with glibc's default, every thread of the pool that had encoded a
    preview held its own arena at that peak (RSS 450-670 MiB per worker under 16 concurrent
    previews of a growing log; the GIL leaves more arenas little to gain).

    Allocations of MMAP_BYTES and more still get their own mapping: orjson writes a preview body
    into a buffer sized for the worst case (44-63 MiB for a 7 MiB body) and keeps it; in the heap,
    each such buffer widened what later allocations touched, and a worker under 16 readers of a
    growing log peaked at 175-181 MiB; mapped, only the body's own pages are ever touched and
    all of it goes back when the body is freed: 143-148 MiB, the growing preview as fast
    (bench/reads.py). Returns False where this is not glibc.
    """
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    return (bool(mallopt(_M_MMAP_THRESHOLD, MMAP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, 256 * 1024 * 1024))
            and bool(mallopt(_M_ARENA_MAX, ARENAS)))


def die_with_supervisor() -> bool:
    """In a worker process of `serve --workers N`: have the kernel kill it when the supervisor dies.

    uvicorn's workers outlive a supervisor that was SIGKILLed (`kill -9`, the OOM killer) and go
    on serving on the shared socket, running jobs and holding the log heads a restarted server
    needs; PR_SET_PDEATHSIG sends them SIGKILL instead (uvicorn starts them from its main thread,
    whose end is what the kernel watches). Returns False, doing nothing, in a process that is not
    such a worker (`--workers 1` serves in the supervisor's own process) or without prctl.
    """
    parent = multiprocessing.parent_process()
    prctl = _libc_function("prctl")
    if parent is None or prctl is None:
        return False
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent.pid:  # it died before the call: nobody would signal us
        os._exit(1)
    return True


def _libc_function(name: str) -> Any:
    """glibc's function `name` through ctypes; None where there is no such C library function."""
    library = ctypes.util.find_library("c")
    if not library:
        return None
    try:
        return getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):
        return None


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging setup, with jobtail's own loggers printed the same way at `level`
    (else Python shows only their warnings, bare, and never an info line)."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["jobtail"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


def serve(settings: Settings, factory: str) -> None:
    """Run the server in the foreground until interrupted; each worker builds its app by calling
    `factory` ("module:function"), with the settings in `JOBTAIL_*` variables."""
    for name, value in settings.model_dump().items():
        os.environ[f"JOBTAIL_{name.upper()}"] = str(value)
    if settings.workers > 1:  # the workers share their metrics through files there
        metrics.prepare_multiprocess(settings.data_dir / "metrics")
    else:
        os.environ.pop(metrics.MULTIPROC_ENV, None)
    uvicorn.run(
        factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        log_config=log_config(settings.log_level),
        access_log=settings.log_level == "debug",
        loop="auto",
        http="auto",
        timeout_graceful_shutdown=10,
    )
