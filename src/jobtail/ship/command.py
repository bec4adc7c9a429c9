"""Run a command and ship its output: stdout and stderr merged into one pipe, so their order is kept.

A reader thread copies the pipe into a bounded queue (and, unless quiet, to our own stdout); the
caller's thread sends batches of about `batch_bytes` or `batch_seconds` from it, each at the
offset where it belongs, so retries after a lost response are harmless. The first batch goes to
wherever the log ends when it is sent. While the server is away the queue fills up to
`buffer_bytes`, and then the command blocks on its next write: output is delayed, never lost.

The command runs in its own process group; SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2
sent to the shipper are passed to that group, once. When the command has exited, the rest of its
output is read (until the pipe closes, or until it has been quiet for `drain_seconds` if a process
it left behind holds the pipe open) and shipped; a SIGINT or SIGTERM at that point stops the
retrying instead. The exit code is the command's (128 + N when signal N ended it), or 1 if the
command succeeded but its output could not all be shipped.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

from jobtail.ship.files import Pacing
from jobtail.ship.uplink import Diverged, ShipFailed, Stopped, Uplink

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
_F_SETPIPE_SZ = 1031
READ_BYTES = 1024 * 1024


class ByteQueue:
    """A bounded FIFO of bytes: `put` blocks while it holds `capacity` bytes; `take` hands out
    batches of up to `max_bytes` once that many are waiting, the oldest byte has waited
    `max_wait` seconds, or the queue is closed. After `discard()`, `put` drops its bytes."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._buf = bytearray()
        self._first_at = 0.0
        self._closed = False
        self._discard = False
        self._cond = threading.Condition()

    def put(self, data: bytes) -> None:
        with self._cond:
            while len(self._buf) >= self.capacity and not self._discard:
                self._cond.wait()
            if self._discard:
                return
            if not self._buf:
                self._first_at = time.monotonic()
            self._buf += data
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def discard(self) -> None:
        with self._cond:
            self._discard = True
            self._buf.clear()
            self._cond.notify_all()

    def take(self, max_bytes: int, max_wait: float) -> bytes | None:
        """The next batch, or None once the queue is closed and empty."""
        with self._cond:
            while True:
                if len(self._buf) >= max_bytes or (self._closed and self._buf):
                    break
                if self._closed:
                    return None
                if self._buf:
                    remaining = self._first_at + max_wait - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                else:
                    self._cond.wait()
            data = bytes(self._buf[:max_bytes])
            del self._buf[:max_bytes]
            self._first_at = time.monotonic()
            self._cond.notify_all()
            return data


DEFAULT_PACING = Pacing()


class CommandShipper:
    """Runs `argv` and ships its output through `uplink`; `run()` returns the exit code to use."""

    def __init__(self, uplink: Uplink, argv: list[str], *, pacing: Pacing = DEFAULT_PACING,
                 buffer_bytes: int = 64 * 1024 * 1024, drain_seconds: float = 2.0, tee: bool = True,
                 say: Callable[[str], None] = lambda _: None) -> None:
        self.uplink = uplink
        self.argv = argv
        self.pacing = pacing
        self.queue = ByteQueue(buffer_bytes)
        self.drain_seconds = drain_seconds
        self.tee = tee
        self._say = say
        self._exited = threading.Event()
        self.proc: subprocess.Popen[bytes] | None = None
        self.shipped = 0  # bytes acknowledged by the server
        self.offset: int | None = None  # log offset of the next batch

    def run(self) -> int:
        read_fd, write_fd = os.pipe()
        try:
            fcntl.fcntl(read_fd, _F_SETPIPE_SZ, READ_BYTES)
        except OSError:
            pass
        env = {**os.environ}
        env.setdefault("PYTHONUNBUFFERED", "1")  # a Python command's prints arrive when printed
        try:
            self.proc = subprocess.Popen(self.argv, stdout=write_fd, stderr=write_fd, env=env, process_group=0)
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            self._say(f"cannot run {self.argv[0]}: {exc.strerror}")
            return 127 if isinstance(exc, FileNotFoundError) else 126
        os.close(write_fd)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in FORWARDED}
        reader = threading.Thread(target=self._read, args=(read_fd,), name="jobtail-ship-reader", daemon=True)
        reader.start()
        waiter = threading.Thread(target=self._wait, name="jobtail-ship-waiter", daemon=True)
        waiter.start()
        failed = False
        try:
            self._send_all()
        except ShipFailed as exc:
            self._say(f"shipping failed: {exc}; the command's further output is not shipped")
            failed = True
        except Stopped:
            failed = True
        if failed:
            self.queue.discard()
        try:
            code = self.proc.wait()
            reader.join()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if failed:
            self._say(f"stopped with part of the output unsent; {self.shipped} bytes shipped")
        code = 128 - code if code < 0 else code
        return 1 if failed and code == 0 else code

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        proc = self.proc
        if proc is not None and not self._exited.is_set():
            try:
                os.killpg(proc.pid, signum)
            except ProcessLookupError:
                pass
        elif signum in (signal.SIGINT, signal.SIGTERM):
            self.uplink.stop.set()

    def _wait(self) -> None:
        assert self.proc is not None
        self.proc.wait()
        self._exited.set()

    def _read(self, fd: int) -> None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        last_data = time.monotonic()
        out = sys.stdout.buffer if self.tee else None
        try:
            while True:
                if poller.poll(100):
                    chunk = os.read(fd, READ_BYTES)
                    if not chunk:
                        break
                    last_data = time.monotonic()
                    if out is not None:
                        try:
                            out.write(chunk)
                            out.flush()
                        except (OSError, ValueError):
                            out = None
                    self.queue.put(chunk)
                elif self._exited.is_set() and time.monotonic() - last_data >= self.drain_seconds:
                    break  # a process the command left behind holds the pipe open
        finally:
            os.close(fd)
            self.queue.close()

    def _send_all(self) -> None:
        while (data := self.queue.take(self.pacing.batch_bytes, self.pacing.batch_seconds)) is not None:
            if self.offset is None:
                self.offset = self.uplink.end()
                self._say(f"shipping the output of {self.argv[0]} to log offset {self.offset}")
            while True:
                try:
                    self.uplink.append(self.offset, data)
                    break
                except Diverged as diverged:
                    # Only another writer (bytes past ours) or a server that lost acknowledged
                    # bytes (an end before ours) get here; either way the output goes on at the end.
                    self._say(f"the task log ends at {diverged.full_size}, not {self.offset}: another writer "
                              "or lost bytes; continuing at its end")
                    self.offset = diverged.full_size
            self.offset += len(data)
            self.shipped += len(data)
