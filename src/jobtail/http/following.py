"""Live follow's per-process parts: ending every stream on shutdown, and the per-caller stream cap.

The wake-ups themselves come from the store's notifier (`LogStore.follow`, `jobtail.core.follow`).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from jobtail import metrics
from jobtail.core.store import LogStore
from jobtail.settings import Settings


class Shutdown:
    """Ends every stream when the server is asked to stop.

    Uvicorn waits for open responses before it shuts the app down, so streams must end first:
    `install()` (from the main thread; elsewhere it does nothing) chains a SIGTERM/SIGINT handler
    in front of the current one (uvicorn's), which `trigger()`s, then calls the previous handler.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, wake_all: Callable[[], None]) -> None:
        self._wake_all = wake_all
        self._event = threading.Event()
        self._previous: dict[int, Any] = {}

    def is_set(self) -> bool:
        return self._event.is_set()

    def trigger(self) -> None:
        """End every stream of this process (safe from a signal handler: no locks taken)."""
        self._event.set()
        self._wake_all()

    def install(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return True

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            if signal.getsignal(sig) == self._handle:
                signal.signal(sig, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.trigger()
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, frame)
        elif previous in (signal.SIG_DFL, None):  # what would have happened without us
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)


class StreamSlots:
    """Counts open streams per principal against a cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> bool:
        with self._lock:
            if self._open.get(key, 0) >= self.cap:
                metrics.refused("streams")
                return False
            self._open[key] = self._open.get(key, 0) + 1
            metrics.follow_stream_opened()
            return True

    def release(self, key: str) -> None:
        metrics.follow_stream_closed()
        with self._lock:
            left = self._open.get(key, 0) - 1
            if left > 0:
                self._open[key] = left
            else:
                self._open.pop(key, None)

    def open(self, key: str) -> int:
        with self._lock:
            return self._open.get(key, 0)


class Following:
    """What live follow needs in one server process besides the store's notifier; made by the
    app's lifespan, closed with it."""

    def __init__(self, store: LogStore, settings: Settings) -> None:
        self.store = store
        self.heartbeat = settings.stream_heartbeat_seconds
        self.shutdown = Shutdown(store.wake_followers)
        self.slots = StreamSlots(settings.max_streams_per_principal)
        self.shutdown.install()

    def close(self) -> None:
        self.shutdown.uninstall()
