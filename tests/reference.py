"""Independent reference definitions that tests compare the product against."""

from __future__ import annotations


def reference_preview(log: bytes, cap: int) -> tuple[str, int, int]:
    """CONTRACT §10.1, written from the text: `(content, current_size, full_size)` of `log`'s preview.

    The window is the last `cap` bytes; unless it starts at the log's first byte it moves forward
    to just after the first newline in it, or, with no newline, to the first byte that is not a
    UTF-8 continuation byte. Invalid UTF-8 decodes to U+FFFD.
    """
    begin = max(0, len(log) - cap)
    window = log[begin:]
    if begin > 0:
        newline = window.find(b"\n")
        if newline >= 0:
            window = window[newline + 1 :]
        else:
            skip = 0
            while skip < len(window) and 0x80 <= window[skip] <= 0xBF:
                skip += 1
            window = window[skip:]
    return window.decode("utf-8", errors="replace"), len(window), len(log)
