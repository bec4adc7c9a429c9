"""Search of a whole task log: substring or regular expression, with line numbers and context.

The log is scanned in windows of about 4 MiB of whole lines, so memory stays bounded whatever
the log's size, and a time budget stops long scans with a cursor to continue from. Forward
searches continue with `after_line`, backward ones (newest match first) with `before_line`.
Windows without a match cost a read and a byte search only: line numbers are worked out through
the line index for the matches alone.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from jobtail.core.errors import InvalidPattern
from jobtail.core.lines import MAX_LINE_BYTES, Line, LineFinder
from jobtail.core.reader import Reader
from jobtail.core.types import LogState

WINDOW = 4 * 1024 * 1024
_OVERLAP = 64 * 1024  # slices of a giant line overlap so that matches up to this long are found


@dataclass(frozen=True, slots=True)
class Match:
    line: Line
    before: list[Line]
    after: list[Line]


@dataclass(frozen=True, slots=True)
class SearchResult:
    matches: list[Match]
    scanned_bytes: int
    stopped: str | None  # None: the whole range was scanned; else "limit" or "time_budget"
    next_line: int | None  # continue with after_line (forward) / before_line (backward) = this


class Pattern:
    """What a query matches, per line. `find(data, at)` is the start of the first match at or
    after `at`, or -1. A plain, case-sensitive substring uses `bytes.find` (memchr-fast)."""

    def __init__(self, query: str, regex: bool, ignore_case: bool) -> None:
        source = query.encode("utf-8", "surrogateescape")
        self._literal = source if not regex and not ignore_case else None
        flags = re.MULTILINE | (re.IGNORECASE if ignore_case else 0)
        try:
            self._compiled = re.compile(source if regex else re.escape(source), flags)
        except re.error:
            raise InvalidPattern() from None

    def find(self, data: bytes, at: int = 0, *, open_end: bool = False) -> int:
        """With `open_end`, `data` is cut from a longer line: a regular-expression match that
        reaches its end may only exist because of the cut (`$`), so it does not count (the next,
        overlapping slice judges it whole)."""
        if self._literal is not None:
            return data.find(self._literal, at)
        for _ in range(16):  # bounded: a pathological pattern must not make a slice quadratic
            m = self._compiled.search(data, at)
            if m is None:
                return -1
            if not open_end or m.end() < len(data):
                return m.start()
            at = m.start() + 1
        return -1

    def regex(self) -> re.Pattern[bytes]:
        return self._compiled


def compile_pattern(query: str, regex: bool, ignore_case: bool) -> Pattern:
    """The pattern for a query, matched per line (`^`/`$` anchor at line ends); an invalid
    regular expression raises InvalidPattern. Matches longer than 64 KiB inside lines longer than 4 MiB
    may be missed."""
    return Pattern(query, regex, ignore_case)


@dataclass(frozen=True, slots=True)
class _Lines:
    """Whole lines `data`, starting at log offset `start`."""

    start: int
    data: bytes


@dataclass(frozen=True, slots=True)
class _Giant:
    """One line longer than a window, `[start, end)` in the log (its newline included)."""

    number: int
    start: int
    end: int


class Searcher:
    def __init__(self, reader: Reader, lines: LineFinder, clock: Callable[[], float] = time.monotonic) -> None:
        self._reader = reader
        self._lines = lines
        self._clock = clock

    def search(
        self,
        state: LogState,
        pattern: Pattern,
        *,
        first_line: int,
        last_line: int,
        backward: bool,
        limit: int,
        context: int,
        budget_seconds: float,
    ) -> SearchResult:
        """Matching lines among `first_line … last_line` (one match per line), in order of the
        scan; `context` lines around each come from the line index."""
        if first_line > last_line:
            return SearchResult([], 0, None, None)
        low = self._lines.start_of(state, first_line)
        high = self._line_end(state, last_line)
        deadline = self._clock() + budget_seconds
        found: list[Line] = []
        scanned = 0
        groups = self._backward(state, low, high) if backward else self._forward(state, low, high)
        for group in groups:
            if isinstance(group, _Giant):
                hits, size = self._giant_hit(state, pattern, group), group.end - group.start
            else:
                hits, size = self._hits(state, pattern, group), len(group.data)
            scanned += size
            for hit in reversed(hits) if backward else hits:
                found.append(hit)
                if len(found) == limit:
                    return self._result(state, found, scanned, "limit", context, hit.number)
            if self._clock() > deadline:
                start, end = (group.start, group.end) if isinstance(group, _Giant) else (
                    group.start, group.start + len(group.data))
                resume = self._lines.line_of(state, start) if backward else self._line_before(state, end)
                return self._result(state, found, scanned, "time_budget", context, resume)
        return self._result(state, found, scanned, None, context, None)

    def _result(self, state: LogState, found: list[Line], scanned: int, stopped: str | None, context: int,
                resume: int | None) -> SearchResult:
        matches = [self._with_context(state, line, context) for line in found]
        return SearchResult(matches, scanned, stopped, resume)

    def _with_context(self, state: LogState, line: Line, context: int) -> Match:
        if context == 0:
            return Match(line, [], [])
        first = max(1, line.number - context)
        around = self._lines.page(state, first, line.number - first + 1 + context)
        return Match(line, [x for x in around if x.number < line.number], [x for x in around if x.number > line.number])

    def _line_end(self, state: LogState, number: int) -> int:
        total = self._lines.total(state)
        return state.end_offset if number >= total else self._lines.start_of(state, number + 1)

    def _line_before(self, state: LogState, offset: int) -> int:
        """The number of the line that ends just before `offset` (a line start or the end)."""
        return self._lines.total(state) if offset >= state.end_offset else self._lines.line_of(state, offset) - 1

    def _forward(self, state: LogState, low: int, high: int) -> Iterator[_Lines | _Giant]:
        """Whole lines in windows of about WINDOW bytes, oldest first; a longer line alone."""
        pos = low
        while pos < high:
            data = self._reader.read(state.log_id, pos, min(high, pos + WINDOW))
            if pos + len(data) < high:
                cut = data.rfind(b"\n") + 1
                if cut == 0:  # the line at `pos` is longer than a window
                    number = self._lines.line_of(state, pos)
                    end = min(high, self._line_end(state, number))
                    yield _Giant(number, pos, end)
                    pos = end
                    continue
                data = data[:cut]
            yield _Lines(pos, data)
            pos += len(data)

    def _backward(self, state: LogState, low: int, high: int) -> Iterator[_Lines | _Giant]:
        """The same groups, newest first. `high` and every later window end are line starts."""
        end = high
        while end > low:
            start = max(low, end - WINDOW)
            data = self._reader.read(state.log_id, start, end)
            if start > low:
                skip = data.find(b"\n") + 1
                if skip == 0 or skip >= len(data):  # the line ending at `end` is longer than a window
                    number = self._lines.line_of(state, start)
                    line_start = max(low, self._lines.start_of(state, number))
                    yield _Giant(number, line_start, end)
                    end = line_start
                    continue
                start, data = start + skip, data[skip:]
            yield _Lines(start, data)
            end = start

    def _giant_hit(self, state: LogState, pattern: Pattern, line: _Giant) -> list[Line]:
        """Scan one line longer than a window in overlapping slices; at most one hit (its head)."""
        pos = line.start
        while pos < line.end:
            stop = min(line.end, pos + WINDOW)
            # One byte before, so that `^` cannot match at the slice's start; `$` see Pattern.find.
            lead = 1 if pos > line.start else 0
            data = self._reader.read(state.log_id, pos - lead, stop)
            if pattern.find(data, lead, open_end=stop < line.end) >= 0:
                head = self._reader.read(state.log_id, line.start, min(line.end, line.start + MAX_LINE_BYTES))
                cut = line.end - line.start > MAX_LINE_BYTES + 1  # +1: its own newline
                return [Line(line.number, line.start, head.rstrip(b"\n"), cut)]
            if stop == line.end:
                break
            pos = max(pos + 1, stop - _OVERLAP)
        return []

    def _hits(self, state: LogState, pattern: Pattern, group: _Lines) -> list[Line]:
        data, hits = group.data, list[Line]()
        at = pattern.find(data)
        if at < 0:
            return hits
        number, counted_to = self._lines.line_of(state, group.start), 0
        while at >= 0:
            begin = data.rfind(b"\n", 0, at) + 1
            stop = data.find(b"\n", at)
            stop = len(data) if stop < 0 else stop
            number += data.count(b"\n", counted_to, begin)
            counted_to = begin
            text = data[begin:stop]
            hits.append(Line(number, group.start + begin, text[:MAX_LINE_BYTES], len(text) > MAX_LINE_BYTES))
            if stop + 1 > len(data):
                break
            at = pattern.find(data, stop + 1)
        return hits
