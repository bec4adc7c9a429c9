"""One task's process tree, seen from the executor, and what the kernel tells about processes.

A task is started as `shim.py` (see there) in a new session whose id is the shim's pid: the
shim runs `/bin/sh -c COMMAND` in a process group of its own, passes SIGTERM on with a SIGKILL
after the grace period, and reaps the whole tree. The executor therefore only ever signals the
shim, and only while it has not reaped it, so a signal can never reach a recycled pid.

In a sandbox (`jobtail.runner.sandbox`) the session leader is `bwrap`, and the shim is pid 1 of
the task's pid namespace: bwrap names its pid on an info pipe, the executor holds a pidfd to it
(so a signal never reaches a recycled pid there either), and the shim reports the command's
exact wait status on a status pipe, since bwrap's own exit code cannot tell `exit 143` from
death by SIGTERM.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from jobtail.runner.sandbox import SHIM_INSIDE, JobPlaces, Sandbox, environment_args, launcher_environment

SHIM = Path(__file__).with_name("shim.py")
SHELL = "/bin/sh"
INFO_SECONDS = 30.0  # how long bwrap may take to name the shim's pid


@dataclass(frozen=True, slots=True)
class Exit:
    """How a task ended: `code` as a shell reports it (128 + N for death by signal N);
    `exited_at` (epoch seconds) when its main process exited, as exactly as known: the shim's
    report in a sandbox, else when the executor saw it."""

    code: int
    signal: int | None = None
    exited_at: float = 0.0

    @classmethod
    def from_returncode(cls, returncode: int, exited_at: float | None = None) -> Exit:
        at = time.time() if exited_at is None else exited_at
        return cls(128 - returncode, -returncode, at) if returncode < 0 else cls(returncode, None, at)

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
    """A running task: its shim and the session the shim (or its bwrap) leads."""

    def __init__(self, popen: subprocess.Popen[bytes], shim: int | None = None, status: int | None = None) -> None:
        self._popen = popen
        self._shim = shim  # in a sandbox: a pidfd of the shim (None once it is known to be gone)
        self._status = status  # in a sandbox: the read end of the shim's status pipe
        self._exit: Exit | None = None

    @classmethod
    def spawn(cls, command: str, *, env: Mapping[str, str], cwd: str | None, output_fd: int,
              grace_seconds: float, sandbox: Sandbox | None = None, places: JobPlaces | None = None) -> TaskProcess:
        """Start `command` through the shell, stdout and stderr both into `output_fd`, stdin empty;
        in `sandbox` when given (`cwd` and the job's `places` are then required).

        Must be called from a thread that outlives the task: the kernel's parent-death signal
        fires when the thread that started the process ends. Raises OSError (a missing `cwd`).
        """
        grace = repr(float(grace_seconds))
        if sandbox is not None:
            assert cwd is not None and places is not None
            return cls._spawn_sandboxed(sandbox, command, env, Path(cwd), places, output_fd, grace)
        argv = [sys.executable, "-I", "-S", str(SHIM), str(os.getpid()), grace, "-1", SHELL, "-c", command]
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output_fd, stderr=output_fd, cwd=cwd,
                                 env=dict(env), start_new_session=True, close_fds=True)
        return cls(popen)

    @classmethod
    def _spawn_sandboxed(cls, sandbox: Sandbox, command: str, env: Mapping[str, str], cwd: Path,
                         places: JobPlaces, output_fd: int, grace: str) -> TaskProcess:
        if not cwd.is_dir():  # what Popen says for a missing cwd; bwrap would only exit 1
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(cwd))
        info_read, info_write = os.pipe()
        status_read, status_write = os.pipe()
        env_fd = os.memfd_create("jobtail-task-environment", 0)
        os.write(env_fd, environment_args(env))
        os.lseek(env_fd, 0, os.SEEK_SET)
        shim = [sys.executable, "-I", "-S", SHIM_INSIDE, "0", grace, str(status_write), SHELL, "-c", command]
        argv = sandbox.argv(places=places, cwd=cwd, command=shim, info_fd=info_write, env_fd=env_fd)
        try:
            # Blocked from the start: the shim, as pid 1, would drop a SIGTERM it has no handler for yet.
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            try:
                popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output_fd, stderr=output_fd,
                                         env=launcher_environment(env), start_new_session=True, close_fds=True,
                                         pass_fds=(info_write, status_write, env_fd))
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        except BaseException:
            for fd in (info_read, status_read):
                os.close(fd)
            raise
        finally:
            for fd in (info_write, status_write, env_fd):
                os.close(fd)
        return cls(popen, _shim_pidfd(info_read, popen.pid), status_read)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def session(self) -> int:
        """The session id every process of the task shares (unless it called setsid itself)."""
        return self._popen.pid

    def poll(self) -> Exit | None:
        """The task's exit, once the shim has reaped the whole tree; None while it runs."""
        if self._exit is None:
            returncode = self._popen.poll()
            if returncode is None:
                return None
            self._exit = Exit.from_returncode(returncode) if self._status is None else self._sandboxed_exit(returncode)
        return self._exit

    def _sandboxed_exit(self, returncode: int) -> Exit:
        """The shim's report; else what bwrap's exit says: bwrap itself was killed (< 0: its shim
        is killed too, so the task dies with its supervisor), the shim died of signal N
        (128 + N), or bwrap could not set up the sandbox (its message is in the log)."""
        assert self._status is not None
        report = b""
        if returncode < 0 and self._shim is not None:
            _pidfd_signal(self._shim, signal.SIGKILL)
        elif returncode >= 0:
            os.set_blocking(self._status, False)
            try:
                report = os.read(self._status, 64)
            except BlockingIOError:  # the shim died without a word
                pass
        os.close(self._status)
        self._status = None
        if self._shim is not None:
            os.close(self._shim)
            self._shim = None
        status, _, exited_at = report.decode("ascii", "replace").strip().partition(" ")
        if status.isdigit():
            try:
                at = float(exited_at)
            except ValueError:
                at = None
            return Exit.from_returncode(os.waitstatus_to_exitcode(int(status)), at)
        if returncode > 128:
            return Exit(returncode, returncode - 128, time.time())
        return Exit.from_returncode(returncode)

    def terminate(self) -> None:
        """Ask the task to stop: SIGTERM to its processes, SIGKILL after the grace period."""
        if self._status is None:
            self._popen.send_signal(signal.SIGTERM)
        elif self._shim is not None:
            _pidfd_signal(self._shim, signal.SIGTERM)

    def kill(self) -> None:
        """Last resort when the shim itself does not exit: SIGKILL it (`JobRun.poll` then kills
        what is left of the task; in a sandbox the kernel kills it with the shim)."""
        if self._shim is not None:
            _pidfd_signal(self._shim, signal.SIGKILL)
        self._popen.kill()


def _pidfd_signal(pidfd: int, signum: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, signum)
    except ProcessLookupError:
        pass


def _shim_pidfd(info: int, bwrap: int) -> int | None:
    """A pidfd of the shim, from bwrap's JSON on `info` (closed here); None if bwrap never
    started it, or it is gone already (bwrap then exits by itself)."""
    text, deadline = b"", time.monotonic() + INFO_SECONDS
    try:
        while time.monotonic() < deadline and select.select([info], [], [], deadline - time.monotonic())[0]:
            chunk = os.read(info, 4096)
            text += chunk
            try:
                pid = int(json.loads(text)["child-pid"])
                break
            except (ValueError, KeyError, TypeError):
                if not chunk:
                    return None
        else:
            return None
    finally:
        os.close(info)
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    fields = _stat(str(pid))
    if fields is None or int(fields[1]) != bwrap:  # not bwrap's child (any more): not ours to signal
        os.close(pidfd)
        return None
    return pidfd


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
