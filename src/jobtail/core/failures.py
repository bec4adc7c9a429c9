"""The first failure of an attempt: which task failed first, and why, from the end of its log.

A 64-rank job that dies shows 63 NCCL timeouts and one real error; what matters is the task that
exited first with a non-zero code and the last Python traceback in its log — its final line,
`torch.OutOfMemoryError: CUDA out of memory…`. Finding it reads at most `TAIL_BYTES` of the log
(one bounded read at its end, never a scan), from the attempt's start at the earliest.
"""

from __future__ import annotations

import re

from jobtail.core.store import LogStore
from jobtail.core.terminal import final_state
from jobtail.core.types import LogState

TAIL_BYTES = 64 * 1024
MAX_REASON_CHARS = 300
TRACEBACK = b"Traceback (most recent call last):"
PLATFORM = b"[ModelArts Service Log]"
_COLOURS = re.compile(r"\x1b\[[0-9;:]*m")


def traceback_line(tail: bytes) -> str | None:
    """The final line of the last Python traceback in `tail` (the exception and its message,
    as a terminal shows it, at most MAX_REASON_CHARS), or None when there is none."""
    at = tail.rfind(TRACEBACK)
    if at < 0:
        return None
    for raw in tail[at + len(TRACEBACK):].split(b"\n")[1:]:
        line = _COLOURS.sub("", final_state(raw.decode("utf-8", "replace"))).rstrip()
        if not line or line[0].isspace() or raw.startswith(PLATFORM):
            continue  # a frame, its source line and its carets are indented
        return line if len(line) <= MAX_REASON_CHARS else line[: MAX_REASON_CHARS - 1] + "…"
    return None


def traceback_reason(store: LogStore, state: LogState, since: int) -> str | None:
    """`traceback_line` of the log's last TAIL_BYTES as of `state`, not before offset `since`."""
    start = max(since, state.start_offset, state.end_offset - TAIL_BYTES)
    if start >= state.end_offset:
        return None
    return traceback_line(b"".join(store.read(state, start, state.end_offset)))
