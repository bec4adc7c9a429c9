"""Copy one task's output into its task log, through the same append path as ingest.

A task writes stdout and stderr into one pipe (so their order is kept); a thread reads it and
appends to the task log with explicit offsets (`LogStore.append(ref, data, offset)`), which makes
a retried append after a transient database error idempotent. Appends are paced by how busy the
task is (`Pacer`): a quiet task's output (a line now and then, a progress bar, a prompt) is
appended as soon as it is read; a busy task's is batched, the gap between its appends growing
with the rate its output arrives at, up to `MAX_GAP_SECONDS`, so each append carries more bytes
and a chatty task costs the store no more appends per second than a fixed 100 ms window did. A
batch never exceeds `BATCH_BYTES`, and a process writing faster than the log is read is slowed
down by the full pipe rather than losing output. Each batch's arrival time is when its first
byte was read (not when the batch was appended), so `--timestamps` is exact to the batch.

Platform lines, `[ModelArts Service Log][LEVEL][time] …`, mark the start and the exit of the
task, always at the start of a line. When the task has ended the head of the log is sealed.
If the job is deleted meanwhile, output is read and dropped so the process never blocks. With a
`Fence` (replicas sharing a database, `jobtail.runner.leases`), an append waits while the
executor's lease is unsettled and is dropped once the lease is lost.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import select
import threading
import time
from datetime import datetime

from jobtail.core.errors import JobNotFound, OffsetConflict, TaskNotFound
from jobtail.core.store import LogStore
from jobtail.core.types import TaskRef
from jobtail.runner.leases import Fence

log = logging.getLogger("jobtail.runner")

BATCH_BYTES = 1024 * 1024
MAX_GAP_SECONDS = 0.1  # the longest a read byte waits for its append (a task at or over FULL_RATE)
FULL_RATE = 100.0  # arrivals per second (reads that found output) at which the gap reaches its maximum
RATE_SECONDS = 1.0  # the time constant of the arrival-rate estimate
DRAIN_SECONDS = 1.0  # after the task ended: how long output may still trickle in (a leaked pipe)
LEAK_SECONDS = 10.0  # ... and how long a process that escaped the task may keep writing into it
PIPE_BYTES = 1024 * 1024
_F_SETPIPE_SZ = 1031


def platform_line(message: str, level: str = "INFO") -> bytes:
    """One `[ModelArts Service Log]` line, timestamped like the ModelArts platform's own."""
    now = datetime.now()
    stamp = now.strftime("%Y/%m/%d %H:%M:%S") + f",{now.microsecond // 1000:03d}"
    return f"[ModelArts Service Log][{level}][{stamp}] {message}\n".encode()


class Pacer:
    """When the next append may go out, from how often output has been arriving.

    The arrival rate is an exponentially decayed count of reads that found output (time
    constant `RATE_SECONDS`): `rate = count / RATE_SECONDS`. Appends are kept at least
    `gap = MAX_GAP_SECONDS × min(1, rate / FULL_RATE)` apart. So a task writing a line now and
    then (or the first line after a pause) is appended at once; one writing `r` times a second
    gets `min(r, 1/gap)` appends a second: never more than sqrt(FULL_RATE / MAX_GAP_SECONDS)
    (≈ 32), and 1 / MAX_GAP_SECONDS (10) once it writes FULL_RATE times a second or more, each
    append carrying everything read since the last. Times are `time.monotonic()` seconds.
    """

    def __init__(self) -> None:
        self._count = 0.0
        self._counted_at = 0.0
        self._appended_at = -math.inf

    def arrived(self, now: float) -> None:
        """Output was read at `now`."""
        self._count = self._decayed(now) + 1.0
        self._counted_at = now

    def appended(self, now: float) -> None:
        self._appended_at = now

    def gap(self, now: float) -> float:
        """The least time between two appends at the current arrival rate."""
        rate = self._decayed(now) / RATE_SECONDS
        return MAX_GAP_SECONDS * min(1.0, rate / FULL_RATE)

    def due(self, now: float) -> float:
        """When buffered output may be appended (≤ `now`: at once)."""
        return self._appended_at + self.gap(now)

    def _decayed(self, now: float) -> float:
        return self._count * math.exp(-max(0.0, now - self._counted_at) / RATE_SECONDS)


class TaskCapture:
    """Reads the pipe whose write end (`write_fd`) a task's stdout and stderr go to."""

    def __init__(self, store: LogStore, ref: TaskRef, fence: Fence | None = None) -> None:
        self.store = store
        self.ref = ref
        self._fence = fence or Fence()
        self._offset = store.state(ref).end_offset
        self._read_fd, self.write_fd = os.pipe()
        try:
            fcntl.fcntl(self._read_fd, _F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:  # over /proc/sys/fs/pipe-max-size: the default 64 KiB works, only slower
            pass
        self._last_byte = b"\n"
        self._dropping = False
        self._exit_line = b""
        self._finish_by = 0.0
        self._finishing = threading.Event()
        self._started = False
        self._thread = threading.Thread(target=self._run, name=f"jobtail-capture-{ref.task_id}", daemon=True)
        self.done = threading.Event()

    # -- the executor's side ------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Append `data` now; only before `start()` (the start line)."""
        self._append(bytes(data))

    def start(self) -> None:
        """Start reading; the caller closes its copy of `write_fd` once the task has it."""
        self._started = True
        self._thread.start()

    def close_write_end(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def finish(self, exit_line: bytes) -> None:
        """The task has ended: read what is left, append `exit_line`, seal, then set `done`.

        Without `start()` (the task could not be spawned) this runs in the caller's thread."""
        self._exit_line = exit_line
        self._finish_by = time.monotonic() + DRAIN_SECONDS
        self._finishing.set()
        if not self._started:
            self.close_write_end()
            self._started = True
            self._run()

    def drop_output(self) -> None:
        """Stop storing (the job was deleted); output is still read so the task never blocks."""
        self._dropping = True

    # -- the reading thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._copy()
            self._finishing.wait()
            line = self._exit_line
            if line:
                self._append(line if self._last_byte == b"\n" else b"\n" + line)
            if not self._dropping and self._fence.wait():
                self.store.seal(self.ref)
        except (JobNotFound, TaskNotFound):
            pass
        except Exception:
            log.exception("capturing %s failed", self.ref)
        finally:
            self.close_write_end()
            os.close(self._read_fd)
            self.done.set()

    def _copy(self) -> None:
        """Copy until end of file, or until nothing arrives within DRAIN_SECONDS of `finish()`
        (a process that escaped the task may hold the pipe open), and never past LEAK_SECONDS."""
        poller = select.poll()
        poller.register(self._read_fd, select.POLLIN)
        pacer = Pacer()
        buffer = bytearray()
        arrived = 0.0  # wall-clock time of the buffer's first byte
        while True:
            now = time.monotonic()
            finishing = self._finishing.is_set()
            if buffer:  # noqa: SIM108 (three cases read better as branches)
                wait = max(0.0, pacer.due(now) - now)
            else:
                wait = max(0.0, self._finish_by - now) if finishing else 0.25
            chunk = None
            if poller.poll(wait * 1000):
                chunk = os.read(self._read_fd, BATCH_BYTES - len(buffer))
                if chunk:
                    pacer.arrived(time.monotonic())
                    if not buffer:
                        arrived = time.time()
                buffer += chunk
            elif finishing and not buffer and time.monotonic() >= self._finish_by:
                return
            now = time.monotonic()
            if buffer and (chunk == b"" or len(buffer) >= BATCH_BYTES or now >= pacer.due(now)):
                self._append(bytes(buffer), arrived)
                pacer.appended(time.monotonic())
                buffer.clear()
            if chunk == b"" or (finishing and now > self._finish_by + LEAK_SECONDS):
                if buffer:
                    self._append(bytes(buffer), arrived)
                return

    def _append(self, data: bytes, arrived_at: float | None = None) -> None:
        """Append at our offset (arrived at `arrived_at`, else now); retried until stored (or the job is gone)."""
        if self._dropping or not data:
            return
        if not self._fence.wait():  # the lease is lost: another replica ended the job
            self._dropping = True
            return
        delay = 0.05
        while True:
            try:
                appended = self.store.append(self.ref, data, self._offset, arrived_at=arrived_at)
            except (JobNotFound, TaskNotFound):
                self._dropping = True
                return
            except OffsetConflict as conflict:  # someone else appended to this task log: go after them
                # ... unless it was the replica that took this job over while this process stood
                # still between its fence check and the append: ask the fence again
                if not self._fence.wait():
                    self._dropping = True
                    return
                log.warning("%s: foreign bytes in the task log; continuing at %d", self.ref, conflict.full_size)
                self._offset = conflict.full_size
                continue
            except Exception:
                if self._dropping:
                    return
                log.exception("appending to %s failed; retrying", self.ref)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            break
        self._offset = appended.full_size
        self._last_byte = data[-1:]
