"""The supervisor of one task. The executor runs it by path, with the standard library only:

    python -I -S shim.py PARENT_PID GRACE_SECONDS STATUS_FD COMMAND [ARG...]

It starts in a session of its own (the executor passes `start_new_session`), or as pid 1 of the
task's sandbox (`jobtail.runner.sandbox`: bwrap is then its parent and PARENT_PID is 0), and
runs COMMAND in a process group of its own (pgid = COMMAND's pid), so it can signal the whole
task without signalling itself. Then:

- SIGTERM — from the executor stopping the task, or from the kernel when the server process
  (in a sandbox: bwrap, which `--die-with-parent` kills with the server) dies
  (`PR_SET_PDEATHSIG`) — is passed to COMMAND's group, followed by SIGKILL GRACE_SECONDS later.
  A server killed with SIGKILL therefore leaves no task running. In a sandbox, whatever is left
  when the shim exits is killed by the kernel with the pid namespace.
- When COMMAND's main process exits, whatever is left of the task (its group, and any child that
  moved to another group) is killed and reaped. The shim is a child subreaper, so orphaned
  descendants become its children rather than init's, which in a container may never reap them.
- It exits with COMMAND's status: the same exit code, or death by the same signal. With a
  STATUS_FD (not -1) it first writes COMMAND's wait status there, and when COMMAND's main
  process exited (epoch seconds), as one line `STATUS TIME`: a sandbox's pid 1 cannot die of a
  signal it sends itself, bwrap reports death by signal N as 128 + N, and the executor orders
  the failures of a job's tasks by that time. A supervisor that dies without writing it was
  lost (killed itself).
- Started with SIGTERM blocked (the executor does so for a sandbox, whose pid 1 would otherwise
  drop a SIGTERM that arrives before the handler is set), it still sees that SIGTERM.

It writes nothing itself except a one-line error when COMMAND cannot be executed (exit code 127).
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
REAP_SECONDS = 2.0  # how long to wait for killed leftovers to be reaped after the main process exits


def prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):  # not Linux: no parent-death signal, no subreaper
        return False


def children() -> list[int]:
    """The pids whose parent is this process (from /proc; empty where there is none)."""
    me = os.getpid()
    found: list[int] = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == me:
                found.append(int(name))
    return found


class Shim:
    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.group = 0
        self.stopping = False

    def signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.group, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, signum: int, frame: object) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.signal_group(signal.SIGTERM)
        signal.signal(signal.SIGALRM, lambda *_: self.signal_group(signal.SIGKILL))
        signal.setitimer(signal.ITIMER_REAL, max(self.grace, 0.001))

    def reap(self, main: int) -> tuple[int, float]:
        """Wait for the main process, then kill and reap the rest; returns the main wait status
        and when the main process exited."""
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:  # cannot happen before main exits, but never spin
                return 0, time.time()
            if pid == main:
                exited_at = time.time()
                break
        deadline = time.monotonic() + REAP_SECONDS
        while time.monotonic() < deadline:
            self.signal_group(signal.SIGKILL)
            for pid in children():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass
            except ChildProcessError:
                break
            time.sleep(0.01)
        return status, exited_at


def start(command: list[str]) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            os.setpgid(0, 0)
            # Python ignores SIGPIPE and SIGXFSZ; a command expects the defaults, as a shell gives it.
            for name in ("SIGPIPE", "SIGXFSZ"):
                signal.signal(getattr(signal, name), signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            os.execvp(command[0], command)
        except OSError as exc:
            os.write(2, f"jobtail: cannot run {command[0]}: {exc}\n".encode())
        os._exit(127)
    try:
        os.setpgid(pid, pid)
    except OSError:  # the child did it already and has exec'd
        pass
    return pid


def main(argv: list[str]) -> int:
    parent, grace, status_fd, command = int(argv[1]), float(argv[2]), int(argv[3]), argv[4:]
    if status_fd >= 0:
        os.set_inheritable(status_fd, False)  # COMMAND must not write our status
    # SIGTERM waits until the command's group exists: before that there is nothing to signal.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if parent and os.getppid() != parent:  # the server died before we asked to hear about it
        return 1
    shim = Shim(grace)
    shim.group = start(command)
    signal.signal(signal.SIGTERM, shim.stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    status, exited_at = shim.reap(shim.group)
    signal.setitimer(signal.ITIMER_REAL, 0)
    if status_fd >= 0:
        os.write(status_fd, f"{status} {exited_at!r}\n".encode())
        os.close(status_fd)
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return code
    # Die of the same signal, so the executor sees what the command saw (and no core of ours).
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if -code != signal.SIGKILL:
        signal.signal(-code, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {-code})
    os.kill(os.getpid(), -code)
    return 128 - code  # pid 1 of a sandbox: still alive, exits as a shell would report it


if __name__ == "__main__":
    sys.exit(main(sys.argv))
