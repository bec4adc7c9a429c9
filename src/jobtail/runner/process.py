"""One task's process tree, seen from the executor, and what the kernel tells about processes.

A task is started as `shim.py` (see there) in a new session whose id is the shim's pid: the
shim runs `/bin/sh -c COMMAND` in a process group of its own, passes SIGTERM on with a SIGKILL
after the grace period, and reaps the whole tree. The executor therefore only ever signals the
shim, and only while it has not reaped it, so a signal can never reach a recycled pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

SHIM = Path(__file__).with_name("shim.py")
SHELL = "/bin/sh"


@dataclass(frozen=True, slots=True)
class Exit:
    """How a task ended: `code` as a shell reports it (128 + N for death by signal N)."""

    code: int
    signal: int | None = None

    @classmethod
    def from_returncode(cls, returncode: int) -> Exit:
        return cls(128 - returncode, -returncode) if returncode < 0 else cls(returncode)

    @property
    def signal_name(self) -> str | None:
        if self.signal is None:
            return None
        try:
            return signal.Signals(self.signal).name
        except ValueError:
            return f"signal {self.signal}"

    def describe(self) -> str:
        """`exit code 1`, or `exit code 143 (SIGTERM)` for a task killed by a signal."""
        return f"exit code {self.code}" + (f" ({self.signal_name})" if self.signal is not None else "")


class TaskProcess:
    """A running task: its shim and the session the shim leads."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen

    @classmethod
    def spawn(cls, command: str, *, env: Mapping[str, str], cwd: str | None, output_fd: int,
              grace_seconds: float) -> TaskProcess:
        """Start `command` through the shell, stdout and stderr both into `output_fd`, stdin empty.

        Must be called from a thread that outlives the task: the kernel's parent-death signal
        fires when the thread that started the process ends. Raises OSError (a missing `cwd`).
        """
        argv = [sys.executable, "-I", "-S", str(SHIM), str(os.getpid()), repr(float(grace_seconds)),
                SHELL, "-c", command]
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output_fd, stderr=output_fd, cwd=cwd,
                                 env=dict(env), start_new_session=True, close_fds=True)
        return cls(popen)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def session(self) -> int:
        """The session id every process of the task shares (unless it called setsid itself)."""
        return self._popen.pid

    def poll(self) -> Exit | None:
        """The task's exit, once the shim has reaped the whole tree; None while it runs."""
        returncode = self._popen.poll()
        return None if returncode is None else Exit.from_returncode(returncode)

    def terminate(self) -> None:
        """Ask the task to stop: SIGTERM to its processes, SIGKILL after the grace period."""
        self._popen.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Last resort when the shim itself does not exit: SIGKILL it (`JobRun.poll` then kills
        what is left of the task)."""
        self._popen.kill()


def _stat(pid: str) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def session_members(sessions: set[int]) -> Iterator[tuple[int, int]]:
    """(pid, session) of every live (not zombie) process in one of `sessions`, from /proc."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return
    for name in names:
        if not name.isdigit():
            continue
        fields = _stat(name)
        # After "comm)": state, ppid, pgrp, session, ...
        if fields is not None and fields[0] != b"Z" and int(fields[3]) in sessions:
            yield int(name), int(fields[3])


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (pid reuse changes it); None if gone."""
    fields = _stat(str(pid))
    if fields is None or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def kill_marked(sessions: set[int], marker: str) -> int:
    """SIGKILL every live process of `sessions` started with `marker` (`NAME=value`) in its
    environment; returns how many. Both must hold, so a recycled pid or session id is safe."""
    killed = 0
    for _ in range(3):  # a process may fork while we look
        found = [pid for pid, _ in session_members(sessions) if environment_has(pid, marker)]
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        if not found:
            break
    return killed


def environment_has(pid: int, entry: str) -> bool:
    """Whether the process was started with `entry` (`NAME=value`) in its environment."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return entry.encode() in f.read().split(b"\0")
    except OSError:
        return False
