"""Ship a file to a task log; with `follow`, keep following it across rotation like `tail -F`.

Where to resume comes from the server, not from memory: the state file (`jobtail.ship.state`)
says which log offset the file's first byte went to (`base`), the server says where the log
ends, and the difference is the file offset to read from. Bytes the server already has are
never sent again, and nothing is skipped. A file that is new to the shipper starts at the log's
current end.

Rotation, while following:

- rename-and-create (the name now points at another inode, or at nothing): the old file is read
  until it has been quiet for `settle_seconds` (a writer may not have reopened yet), then the
  new file is shipped from its first byte, right after the old one's last;
- copy-truncate (the file got shorter than what was shipped, or its first bytes changed; checked
  before new bytes are read): the file is shipped again from its first byte, after what was
  shipped before. Bytes written
  between the last read and the truncation are in the copy only and are not shipped, as with
  `tail -F`.

A shipper restarted after a rename finds the old file by its inode in the same directory and
finishes it before the new one.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from jobtail.ship import state as statefile
from jobtail.ship.state import ShipState
from jobtail.ship.uplink import Diverged, ShipFailed, Uplink

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Pacing:
    # Send when this much is read (per-request costs are per request: over HTTP on one machine,
    # 4 MiB appends went ~1.37x as fast as 1 MiB ones; README, Ingest)...
    batch_bytes: int = 4 * MiB
    batch_seconds: float = 1.0  # ... or when the oldest unsent byte was read this long ago
    poll_seconds: float = 0.2  # how often a caught-up follower looks for growth and rotation
    settle_seconds: float = 1.0  # a renamed file must stay quiet this long before it is left


@dataclass(slots=True)
class _Open:
    """One open input file and where it sits in the log."""

    fd: int
    device: int
    inode: int
    base: int  # log offset of file offset 0
    position: int = 0  # file offset of the next byte to send
    prefix: bytes = b""  # the file's first bytes, as shipped (truncation detection)
    quiet_since: float | None = field(default=None)

    @property
    def ident(self) -> tuple[int, int]:
        return self.device, self.inode


def _open(path: Path) -> tuple[int, os.stat_result] | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    return fd, os.fstat(fd)


def _find_inode(directory: Path, device: int, inode: int) -> Path | None:
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return None
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (device, inode) and entry.is_file(follow_symlinks=False):
            return Path(entry.path)
    return None


class FileShipper:
    """Ships `path` through `uplink`; `run()` returns at the end of the file (without `follow`)
    or when `stop` is set."""

    def __init__(self, uplink: Uplink, path: Path, *, follow: bool, state_path: Path | None = None,
                 pacing: Pacing = Pacing(), say: Callable[[str], None] = lambda _: None) -> None:
        self.uplink = uplink
        self.path = path
        self.follow = follow
        self.state_path = state_path or statefile.default_state_path(path)
        self.pacing = pacing
        self.stop: threading.Event = uplink.stop
        self._say = say
        self.current: _Open | None = None

    # -- the target's identity, for the state file ---------------------------------------------

    def _ids(self) -> tuple[str, str, str]:
        return self.uplink.client.project_id, self.uplink.job_id, self.uplink.task_id

    def _save(self, f: _Open) -> None:
        project, job, task = self._ids()
        prefix = f.prefix[: statefile.PREFIX_BYTES]
        statefile.save(self.state_path, ShipState(project, job, task, f.device, f.inode, f.base, f.position,
                                                  len(prefix), hashlib.sha256(prefix).hexdigest()))

    def _adopt(self, fd: int, st: os.stat_result, base: int) -> _Open:
        """Start a new mapping: this file's first byte goes to log offset `base` (saved first)."""
        f = _Open(fd, st.st_dev, st.st_ino, base)
        self._save(f)
        return f

    # -- starting ------------------------------------------------------------------------------

    def _wait_for_file(self) -> tuple[int, os.stat_result]:
        while True:
            opened = _open(self.path)
            if opened is not None:
                return opened
            if not self.follow:
                raise ShipFailed(f"no such file: {self.path}")
            if self.stop.wait(self.pacing.poll_seconds):
                raise ShipFailed("stopped before the file appeared")

    def _resume(self) -> None:
        end = self.uplink.end()
        saved = statefile.load(self.state_path)
        if saved is not None and not saved.same_target(*self._ids()):
            self._say(f"{self.state_path} is for another task log; starting afresh")
            saved = None
        fd, st = self._wait_for_file()
        if saved is not None and (saved.device, saved.inode) != (st.st_dev, st.st_ino):
            end = self._finish_rotated(saved, end)
            saved = None
        if saved is not None:
            position = end - saved.base
            if position < 0:
                os.close(fd)
                raise ShipFailed(f"the task log ends at {end}, before this file's first byte (log offset "
                                 f"{saved.base}): bytes are missing on the server and cannot be re-sent")
            if position > st.st_size or not statefile.prefix_matches(fd, saved):
                self._say(f"{self.path} was truncated or rewritten since it was last shipped; shipping it "
                          "from its start")
                saved = None
            else:
                self.current = _Open(fd, st.st_dev, st.st_ino, saved.base, position,
                                     os.pread(fd, min(position, statefile.PREFIX_BYTES), 0))
                self._say(f"resuming {self.path} at byte {position} (log offset {end})")
                return
        self.current = self._adopt(fd, st, end)
        self._say(f"shipping {self.path} from its start to log offset {end}")

    def _finish_rotated(self, saved: ShipState, end: int) -> int:
        """The file the state names was rotated away while no shipper ran: finish it, if found."""
        old = _find_inode(self.path.parent, saved.device, saved.inode)
        opened = _open(old) if old is not None else None
        if opened is None:
            self._say(f"the file last shipped (inode {saved.inode}) is gone; its unsent end, if any, is lost")
            return end
        fd, st = opened
        position = end - saved.base
        if (st.st_dev, st.st_ino) != (saved.device, saved.inode) or not 0 <= position <= st.st_size:
            os.close(fd)
            return end
        self._say(f"finishing {old}, rotated since it was last shipped")
        self.current = _Open(fd, st.st_dev, st.st_ino, saved.base, position)
        self._copy(follow=False)
        f = self.current
        self.current = None
        os.close(fd)
        return f.base + f.position

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        """Ship until done; returns the log offset after the last byte shipped."""
        self._resume()
        try:
            self._copy(follow=self.follow)
        finally:
            f = self.current
            if f is not None:
                os.close(f.fd)
        assert f is not None
        return f.base + f.position

    def _copy(self, *, follow: bool) -> None:
        pacing = self.pacing
        buf = bytearray()
        first_at = 0.0
        while True:
            f = self.current
            assert f is not None
            if follow and not buf and self._truncated(f):
                continue
            room = pacing.batch_bytes - len(buf)
            chunk = os.pread(f.fd, room, f.position + len(buf)) if room > 0 else b""
            now = time.monotonic()
            if chunk:
                if not buf:
                    first_at = now
                buf += chunk
                f.quiet_since = None
            idle = not chunk and (not follow or now - first_at >= pacing.batch_seconds)
            due = len(buf) >= pacing.batch_bytes or idle
            if buf and due:
                self._send(f, bytes(buf))
                buf.clear()
                continue
            if chunk:
                continue
            if not follow:
                return
            if not buf and self._rotated(f, now):
                continue
            wait = pacing.poll_seconds if not buf else min(pacing.poll_seconds, first_at + pacing.batch_seconds - now)
            if self.stop.wait(max(0.01, wait)):
                return

    def _send(self, f: _Open, data: bytes) -> None:
        offset = f.base + f.position
        try:
            self.uplink.append(offset, data)
        except Diverged as diverged:
            self._realign(f, diverged)
            return
        if f.position < statefile.PREFIX_BYTES:
            f.prefix += data[: statefile.PREFIX_BYTES - f.position]
        f.position += len(data)
        self._save(f)

    def _realign(self, f: _Open, diverged: Diverged) -> None:
        end = diverged.full_size
        if end > diverged.offset:
            raise ShipFailed(f"the task log holds other bytes at offset {diverged.offset} (it ends at {end}): "
                             "is another writer appending to this task?")
        position = end - f.base
        if position < 0:
            raise ShipFailed(f"the task log ends at {end}, before this file's first byte (log offset {f.base}): "
                             "bytes are missing on the server and cannot be re-sent")
        self._say(f"the server's log ends at {end}, before what was acknowledged; re-sending from byte {position}")
        f.position = position
        f.prefix = f.prefix[:position]

    # -- rotation ------------------------------------------------------------------------------

    def _truncated(self, f: _Open) -> bool:
        """Copy-truncate: if `f` got shorter than what was shipped, or its first bytes changed
        (checked before any new byte is read), start a new mapping at its first byte."""
        size = os.fstat(f.fd).st_size
        if size >= f.position and (not f.prefix or os.pread(f.fd, len(f.prefix), 0) == f.prefix):
            return False
        self._say(f"{self.path} was truncated; shipping it again from its start")
        self.current = self._adopt(os.dup(f.fd), os.fstat(f.fd), f.base + f.position)
        os.close(f.fd)
        return True

    def _rotated(self, f: _Open, now: float) -> bool:
        """At the end of `f`: switch to the file now at the path once the old one has been quiet
        for `settle_seconds`; True if it did."""
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            named = None
        if named is not None and (named.st_dev, named.st_ino) == f.ident:
            f.quiet_since = None
            return False
        if f.quiet_since is None:
            f.quiet_since = now
        if named is None or now - f.quiet_since < self.pacing.settle_seconds:
            return False
        opened = _open(self.path)
        if opened is None:
            return False
        fd, st = opened
        self._say(f"{self.path} was rotated; shipping the new file")
        self.current = self._adopt(fd, st, f.base + f.position)
        os.close(f.fd)
        return True
