"""The state file of a shipped file: which file (device, inode) is which stretch of the task log.

`base` is the log offset of the file's first byte, so file offset `f` is log offset `base + f`;
`shipped` is how far the server has acknowledged (informative: the server's end offset decides
where to resume), and `prefix_sha256` fingerprints the file's first `prefix_len` bytes so that a
file truncated and rewritten while no shipper watched is not mistaken for the old one.

The file is written atomically (temporary file, fsync, rename, directory fsync) and, for a new
file or after a rotation, *before* any of the new bytes is sent: a restarted shipper therefore
never maps bytes it already sent to a second place in the log.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

PREFIX_BYTES = 1024
VERSION = 1


def default_state_path(path: Path) -> Path:
    """`.NAME.jobtail-ship.json` beside `path` (hidden, and not matched by `NAME*` rotation globs)."""
    return path.with_name(f".{path.name}.jobtail-ship.json")


@dataclass(frozen=True, slots=True)
class ShipState:
    project_id: str
    job_id: str
    task_id: str
    device: int
    inode: int
    base: int
    shipped: int = 0
    prefix_len: int = 0
    prefix_sha256: str = ""

    def same_target(self, project_id: str, job_id: str, task_id: str) -> bool:
        return (self.project_id, self.job_id, self.task_id) == (project_id, job_id, task_id)


def prefix_matches(fd: int, state: ShipState) -> bool:
    """Does the open file still begin with the bytes the state fingerprinted?"""
    data = os.pread(fd, state.prefix_len, 0)
    return len(data) == state.prefix_len and hashlib.sha256(data).hexdigest() == state.prefix_sha256


def load(path: Path) -> ShipState | None:
    """The state in `path`, or None when there is none (or it is unreadable: start afresh)."""
    try:
        data = json.loads(path.read_text("utf-8"))
        if data.pop("version", None) != VERSION:
            return None
        return ShipState(**data)
    except (OSError, ValueError, TypeError):
        return None


def save(path: Path, state: ShipState) -> None:
    """Replace `path` with `state`, atomically and durably."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    data = json.dumps({"version": VERSION, **asdict(state)}).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
