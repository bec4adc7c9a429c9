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


def reference_lines(log: bytes) -> list[bytes]:
    """The log's lines without their newlines; a final line without a newline counts."""
    parts = log.split(b"\n")
    return parts[:-1] if parts[-1] == b"" else parts


def reference_page(log: bytes, base_line: int | None, count: int, descending: bool) -> list[tuple[int, bytes]]:
    """CONTRACT §10.2 paging over `reference_lines`: (line number, text) in returned order."""
    numbered = list(enumerate(reference_lines(log), start=1))
    if descending:
        last = len(numbered) if base_line is None else min(len(numbered), base_line - 1)
        first = max(1, last - count + 1)
        return list(reversed(numbered[first - 1 : last])) if last >= 1 else []
    first = 1 if base_line is None else max(1, base_line + 1)
    return numbered[first - 1 : first - 1 + count]
