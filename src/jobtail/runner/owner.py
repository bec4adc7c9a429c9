"""Who runs a job (`JobRecord.owner`), whether that runner is still alive, and the executor lease.

An owner is `HOST:PIDNS:PID:START:TOKEN`: the server process's host name, its pid namespace
(an inode number: containers sharing a host name may not share pids), pid, start time (clock
ticks since boot, so a recycled pid is not mistaken for the original) and a random token per
executor. Liveness can only be judged where the pid means the same process — same host, same
namespace ("here"); jobs owned elsewhere are left to their own host's executor.

The lease: every server process may create an executor, but only the one holding an exclusive
`flock` on `DATA_DIR/runner/executor.lock` runs jobs; the others wait and take over when it
exits (the kernel drops the lock of a dead process). With `--workers N` the running-task cap
is therefore one cap for the machine, and recovery happens as soon as a new holder starts.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from jobtail.runner.process import start_time


def _host() -> tuple[str, int]:
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return socket.gethostname()[:64], namespace


@dataclass(frozen=True, slots=True)
class Owner:
    host: str
    namespace: int
    pid: int
    started: int
    token: str

    @classmethod
    def current(cls) -> Owner:
        """A new owner identity for an executor of this process."""
        pid = os.getpid()
        return cls(*_host(), pid, start_time(pid) or 0, secrets.token_hex(4))

    @classmethod
    def parse(cls, text: str | None) -> Owner | None:
        try:
            host, namespace, pid, started, token = (text or "").rsplit(":", 4)
            return cls(host, int(namespace), int(pid), int(started), token)
        except ValueError:
            return None

    def __str__(self) -> str:
        return f"{self.host}:{self.namespace}:{self.pid}:{self.started}:{self.token}"

    def here(self) -> bool:
        """Whether the owner's pid names a process of this host and pid namespace."""
        return (self.host, self.namespace) == _host()

    def process_alive(self) -> bool:
        """Whether the owning server process still runs (judge only owners that are `here()`)."""
        started = start_time(self.pid)
        if started is None and not os.path.exists("/proc/self/stat"):  # no /proc: pid liveness only
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                pass
            return True
        return started == self.started

    def describe(self) -> str:
        return f"process {self.pid} on {self.host}"


class Lease:
    """The exclusive right to run jobs from one data directory (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, owner: Owner) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{owner}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None
