"""Lines of a task log, found through the sparse line index rather than by rescanning.

Line numbers are absolute and 1-based: line n is the bytes after the (n-1)-th newline up to and
including the n-th, and a final line without a newline counts. Finding line n costs one index
lookup plus a scan of at most about `IndexPolicy.every_bytes`, wherever n is in the log.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from jobtail.core.errors import StorageError
from jobtail.core.log_records import LogSegments
from jobtail.core.reader import Reader
from jobtail.core.types import IndexEntry, LogState

MAX_LINE_BYTES = 1024 * 1024  # a longer line is cut to this in pages (and marked truncated)
MAX_PAGE_BYTES = 5 * 1024 * 1024  # like the preview: a page never returns more than this


@dataclass(frozen=True, slots=True)
class Line:
    number: int
    offset: int  # where the line starts in the log
    text: bytes  # without its newline; cut to MAX_LINE_BYTES when `truncated`
    truncated: bool = False


class LineFinder:
    """Line arithmetic over one snapshot (`LogState`) of a task log."""

    def __init__(self, index: LogSegments, reader: Reader) -> None:
        self._index = index
        self._reader = reader

    def _scan(self, log_id: int, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        """(offset, bytes) pieces of [start, end), small first: most scans stop early."""
        pos, window = start, 64 * 1024
        while pos < end:
            stop = min(end, pos + window)
            yield pos, self._reader.read(log_id, pos, stop)
            pos, window = stop, min(window * 2, 4 * 1024 * 1024)

    def total(self, state: LogState) -> int:
        """Number of lines in the log (a final line without a newline counts)."""
        if state.end_offset == 0:
            return 0
        last = self._reader.read(state.log_id, state.end_offset - 1, state.end_offset)
        return state.line_count + (last != b"\n")

    def first_line(self, state: LogState) -> int:
        """Number of the first retained line: the one holding the byte at `start_offset` (which
        may begin before it, when retention cut that line; its retained part then starts there)."""
        if state.start_offset == 0:
            return 1
        return self.line_of(state, state.start_offset)

    def start_of(self, state: LogState, number: int) -> int:
        """Offset where line `number` (1 ≤ number ≤ total) begins; `start_offset` for the first
        retained line and any before it."""
        if number <= 1 or (state.start_offset and number <= self.first_line(state)):
            return state.start_offset
        # The newest index point with fewer than number-1 newlines before it lies before the
        # (number-1)-th newline, so line `number` starts after it: scan forward from there.
        entry = self._index.index_floor_line(state.log_id, number - 2) or IndexEntry(0, 0, 0.0)
        wanted = number - 1 - entry.line
        for pos, data in self._scan(state.log_id, entry.offset, state.end_offset):
            found = data.count(b"\n")
            if found >= wanted:
                at = -1
                for _ in range(wanted):
                    at = data.index(b"\n", at + 1)
                return pos + at + 1
            wanted -= found
        raise StorageError(f"line {number} is past the log's end", "the line index and the log disagree")

    def line_of(self, state: LogState, offset: int) -> int:
        """Number of the line holding the byte at `offset` (offset < end; an offset before the
        first retained byte counts as that byte)."""
        offset = max(offset, state.start_offset)
        entry = self._index.index_floor_offset(state.log_id, offset) or IndexEntry(0, 0, 0.0)
        newlines = entry.line + sum(d.count(b"\n") for _, d in self._scan(state.log_id, entry.offset, offset))
        return newlines + 1

    def _tail(self, log_id: int, line_start: int, resume: int, head: bytes) -> bytes:
        """The giant line's last redraw (see `page`), else its `head`."""
        tail = self._reader.read(log_id, max(line_start, resume - MAX_LINE_BYTES - 1), resume)
        tail = tail.removesuffix(b"\n")[-MAX_LINE_BYTES:]
        redraw = tail.find(b"\r")
        return head if redraw < 0 else tail[redraw + 1 :]

    def page(self, state: LogState, first: int, count: int, *, tails: bool = False) -> list[Line]:
        """Lines `first … first+count-1` (fewer at the end of the log or past MAX_PAGE_BYTES;
        lines dropped by retention are left out). A line longer than MAX_LINE_BYTES keeps its
        head, or with `tails` its last redraw: the bytes after the first `\\r` of its last
        MAX_LINE_BYTES, when there is one (where a progress bar that never ended its line is)."""
        total = self.total(state)
        last = min(total, first + count - 1)
        if state.start_offset:
            first = max(first, self.first_line(state))
        lines: list[Line] = []
        number, start, size = first, 0, 0
        if first <= last:
            start = self.start_of(state, first)
        while number <= last and size < MAX_PAGE_BYTES:
            parts: list[bytes] = []
            kept, cut, line_start = 0, False, start
            for pos, data in self._scan(state.log_id, start, state.end_offset):
                at = 0
                while number <= last and size < MAX_PAGE_BYTES:
                    newline = data.find(b"\n", at)
                    piece = data[at:] if newline < 0 else data[at:newline]
                    cut = cut or len(piece) > MAX_LINE_BYTES - kept
                    parts.append(piece[: MAX_LINE_BYTES - kept])
                    kept += len(parts[-1])
                    if newline < 0:
                        break
                    text = b"".join(parts)
                    if cut and tails:
                        text = self._tail(state.log_id, line_start, pos + newline + 1, text)
                    lines.append(Line(number, line_start, text, truncated=cut))
                    number, size, parts, kept, cut = number + 1, size + kept, [], 0, False
                    line_start, at = pos + newline + 1, newline + 1
                if number > last or size >= MAX_PAGE_BYTES:
                    return lines
                if cut:  # a giant line: keep its head (or tail), jump past it by the index
                    known = number < (total if tails else last)  # where it ends is needed
                    resume = self.start_of(state, number + 1) if known else state.end_offset
                    text = b"".join(parts)
                    if tails:
                        text = self._tail(state.log_id, line_start, resume, text)
                    lines.append(Line(number, line_start, text, truncated=True))
                    number, size, start = number + 1, size + kept, resume
                    break
            else:
                if line_start < state.end_offset and number <= last:  # a final line without newline
                    lines.append(Line(number, line_start, b"".join(parts)))
                return lines
        return lines
