"""The preview window of CONTRACT §10.1, as pure functions over offsets and bytes."""

from __future__ import annotations

import re

PREVIEW_CAP = 5 * 1024 * 1024  # 5 MiB, the ModelArts preview limit

_LEAD_BYTE = re.compile(rb"[^\x80-\xbf]")


def window_start(start_offset: int, end_offset: int, cap: int = PREVIEW_CAP) -> int:
    """First offset of the raw preview window: the last `cap` retained bytes."""
    return max(start_offset, end_offset - cap)


def snap(window: bytes, at_log_start: bool) -> int:
    """Where in `window` the preview begins.

    At the log's start (its first retained byte) the window is taken whole. Otherwise it moves
    forward to the first byte after the first newline in the window, or, when the window holds
    no newline, to the first byte that does not continue a UTF-8 sequence.
    """
    if at_log_start:
        return 0
    newline = window.find(b"\n")
    if newline >= 0:
        return newline + 1
    lead = _LEAD_BYTE.search(window)
    return lead.start() if lead else len(window)
