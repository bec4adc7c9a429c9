"""Search of a whole task log: substring or regular expression, with line numbers and context.

The log is read in blocks of 4 MiB and scanned in windows of whole lines (the whole block for
a substring, less for a regular expression), so memory stays bounded whatever the log's size, and a time budget stops long
scans with a cursor to continue from. Forward searches continue with `after_line`, backward
ones (newest match first) with `before_line`. Windows without a match cost a read and one RE2
search: line numbers are worked out through the line index for the matches alone.

Every query, substring or not, runs on RE2 (`google-re2`): linear in the bytes scanned whatever
the pattern (`(a+)+$` costs what `a` does), and it lets go of the GIL while it scans, so a
search in the thread pool never stalls the event loop. Patterns are bytes matched byte by byte
(RE2's Latin-1 mode), as Python's bytes patterns are: invalid UTF-8 is searched like any other
byte, and ignore_case folds ASCII letters only. RE2 cannot say how long a scan takes, only
bound it: about (bytes × compiled instructions), up to ~6 ns each when its DFA gives up on an
adversarial pattern. So a regular expression's window is sized from its compiled size, such an
expression is refused past MAX_PROGRAM instructions, and the budget is checked after every
window. An expression with a literal run of bytes at its top level (every match holds it) is
looked for through that literal first, which RE2 finds several times faster than it runs an
expression that does not start with one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from re import _parser  # type: ignore[attr-defined]  # Python's parser of its regex syntax: the only way to read a pattern's parts

import re2

from jobtail.core.errors import InvalidPattern
from jobtail.core.lines import MAX_LINE_BYTES, Line, LineFinder
from jobtail.core.reader import Reader
from jobtail.core.types import LogState

WINDOW = 4 * 1024 * 1024  # bytes searched per step at most (substrings always use it whole)
_MIN_WINDOW = 128 * 1024  # a regular expression's window, at least
_STEP_WORK = 16_000_000  # bytes × instructions per window: ~0.1 s where RE2's DFA gives up
MAX_PROGRAM = 1000  # RE2 instructions a regular expression may compile to
_OVERLAP = 64 * 1024  # slices of a giant line overlap so that matches up to this long are found
_NEAR = 1024 * 1024  # a line number is counted on from a known one at most this far in memory
_MIN_REQUIRED = 3  # bytes a required literal must have to be worth searching for first
_TRIES = 8  # lines with the required literal but no match before the expression takes over


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


# Python-only syntax RE2 refuses, and why, for the error message. Each follows an even number of
# backslashes (the construct itself is not escaped); checked only once RE2 has refused a pattern.
_UNSUPPORTED = [(re.compile(r"(?<!\\)(?:\\\\)*" + construct), reason) for construct, reason in (
    (r"(?:\\[1-9]|\(\?P=)", "backreferences are not supported"),
    (r"\(\?<?[=!]", "lookahead and lookbehind assertions are not supported"),
    (r"\(\?>", "atomic groups are not supported"),
    (r"[*+?}]\+", "possessive quantifiers are not supported"),
    (r"\(\?\(", "conditional groups are not supported"),
    (r"\(\?#", "comments are not supported"),
)]
# Python's \A and \Z (and RE2's \z) would anchor at a window's ends; each line is its own text.
_TEXT_ANCHOR = re.compile(rb"(?<!\\)((?:\\\\)*)\\([AZz])")


def _per_line(source: bytes) -> bytes:
    return _TEXT_ANCHOR.sub(lambda m: m.group(1) + (b"^" if m.group(2) == b"A" else b"$"), source)


def _refusal(query: str, error: str) -> str:
    for construct, reason in _UNSUPPORTED:
        if construct.search(query):
            return f"The regular expression is not supported: {reason} (RE2 syntax)."
    return f"The regular expression is invalid: {error}."


class Pattern:
    """What a query matches, per line: a line matches when the pattern matches some part of it
    (`^` and `$` anchor at its ends; no match spans a newline).

    `find(data, at, end)` is the start of the first match in `data[at:end]`, or -1; the bytes
    around that range are its context (`^` at `at` needs a newline before it, `$` at `end` a
    newline at it), so a range may be cut from a longer line without inventing matches at the cut.
    """

    def __init__(self, query: str, regex: bool, ignore_case: bool) -> None:
        source = query.encode("utf-8", "surrogateescape")
        options = re2.Options()
        options.encoding = re2.Options.Encoding.LATIN1  # a byte is a character, as in bytes patterns
        options.case_sensitive = not ignore_case  # Latin-1 mode folds ASCII letters only, as `re` does
        options.never_nl = True  # per line
        options.never_capture = True  # only where matches start is wanted: no submatch work
        options.literal = not regex
        options.log_errors = False
        try:
            self._compiled = re2.compile(b"(?m)" + _per_line(source) if regex else source, options)
        except re2.error as exc:
            message = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            raise InvalidPattern(_refusal(query, message)) from None
        size = self._compiled.programsize
        if regex and size > MAX_PROGRAM:
            raise InvalidPattern(f"The regular expression is too complex: {size} RE2 instructions, at most {MAX_PROGRAM}.")
        self._cost = size if regex else 0
        self._required = _required_literal(source, options) if regex else None

    def window(self) -> int:
        """Bytes one step may search: a bounded cost whatever the pattern and the data."""
        if not self._cost:  # a literal's DFA has one state per byte of it: never the slow path
            return WINDOW
        return min(WINDOW, max(_MIN_WINDOW, _STEP_WORK // self._cost))

    def find(self, data: bytes, at: int = 0, end: int | None = None) -> int:
        end = len(data) if end is None else end
        if self._required is not None:  # skip to the lines that hold the literal every match has
            find_literal, size = self._required
            for _ in range(_TRIES):
                hint = find_literal(data, at, end)
                if hint < 0:
                    return -1
                at = data.rfind(b"\n", at, hint) + 1 or at
                line_end = data.find(b"\n", hint + size, end)
                line_end = end if line_end < 0 else line_end
                found = self._compiled.search(data, at, line_end)
                if found is not None:
                    return int(found.start())
                if line_end >= end:
                    return -1
                at = line_end + 1
            # The literal is common here: scanning on with the expression alone is cheaper.
        found = self._compiled.search(data, at, end)
        return -1 if found is None else int(found.start())


def _required_literal(source: bytes, options: re2.Options) -> tuple[Callable[[bytes, int, int], int], int] | None:
    """A finder (`find(data, at, end)`: the first start or -1) for the longest run of literal
    bytes at the top level of the expression, so in every match, and its length; when it has
    one of at least _MIN_REQUIRED bytes. Finding a literal first, as grep does, is several times
    faster than running an expression without one at its start. From Python's parse, which
    reads the patterns both engines take alike; None for the others."""
    if any(warned in source for warned in (b"[[", b"--", b"&&", b"~~", b"||")):
        return None  # Python warns (FutureWarning) of set syntax it may read differently one day
    try:
        tree = _parser.parse(source)
    except Exception:  # RE2-only syntax, or nesting deeper than Python's parser recurses
        return None
    best, run = b"", bytearray()
    for op, value in [*tree, (None, None)]:
        if op is _parser.LITERAL:
            run.append(value)
        else:
            best, run = max(best, bytes(run), key=len), bytearray()
    if len(best) < _MIN_REQUIRED:
        return None
    # Folded whatever the case of the expression: only a hint, and RE2 finds a folded literal
    # fast whatever its first byte (a case-sensitive one is a memchr of it: slow for a space).
    folded = re2.Options()
    for name in ("encoding", "never_nl", "log_errors"):
        setattr(folded, name, getattr(options, name))
    folded.literal, folded.case_sensitive = True, False
    compiled = re2.compile(best, folded)
    return lambda data, at, end: -1 if (m := compiled.search(data, at, end)) is None else int(m.start()), len(best)


def compile_pattern(query: str, regex: bool, ignore_case: bool) -> Pattern:
    """The pattern for a query, matched per line; a regular expression RE2 refuses (invalid, or
    Python-only syntax such as backreferences and lookaround) raises InvalidPattern saying why.
    Matches longer than 64 KiB inside lines longer than a window may be missed."""
    return Pattern(query, regex, ignore_case)


@dataclass(frozen=True, slots=True)
class _Lines:
    """Whole lines `data[lo:hi]` (a view into a block read at once), starting at log offset
    `start`; `base` is the log offset of `data[0]`."""

    base: int
    data: bytes
    lo: int
    hi: int

    @property
    def start(self) -> int:
        return self.base + self.lo

    @property
    def end(self) -> int:
        return self.base + self.hi


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
        scan; `context` lines around each come from the line index.

        The budget is checked after every window, and between the slices of a line longer than
        one; a search stops before such a line when the budget runs out inside it, unless the
        line is the first it scans (so that every continuation makes progress)."""
        if first_line > last_line:
            return SearchResult([], 0, None, None)
        low = self._lines.start_of(state, first_line)
        high = self._line_end(state, last_line)
        deadline = self._clock() + budget_seconds
        window = pattern.window()
        found: list[Line] = []
        scanned = 0
        hits: list[Line] = []  # the last group's
        groups = self._backward(state, low, high, window) if backward else self._forward(state, low, high, window)
        for group in groups:
            if isinstance(group, _Giant):
                giant = self._giant_hit(state, pattern, group, window, deadline if scanned else None)
                if giant is None:
                    resume = group.number + 1 if backward else group.number - 1
                    return self._result(state, found, scanned, "time_budget", context, resume)
                hits = giant
                size = group.end - group.start
            else:
                hits, size = self._hits(state, pattern, group, hits), group.hi - group.lo
            scanned += size
            for hit in reversed(hits) if backward else hits:
                found.append(hit)
                if len(found) == limit:
                    return self._result(state, found, scanned, "limit", context, hit.number)
            if self._clock() > deadline:
                resume = self._lines.line_of(state, group.start) if backward else self._line_before(state, group.end)
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

    def _forward(self, state: LogState, low: int, high: int, window: int) -> Iterator[_Lines | _Giant]:
        """Whole lines in groups of at most `window` bytes, oldest first, out of blocks of
        WINDOW bytes read at once; a line longer than a window alone."""
        pos = low
        while pos < high:
            data = self._reader.read(state.log_id, pos, min(high, pos + WINDOW))
            size = len(data) if pos + len(data) == high else data.rfind(b"\n") + 1
            if size == 0:  # the line at `pos` is longer than the block
                number = self._lines.line_of(state, pos)
                end = min(high, self._line_end(state, number))
                yield _Giant(number, pos, end)
                pos = end
                continue
            lo = 0
            while lo < size:
                hi = size if size - lo <= window else data.rfind(b"\n", lo, lo + window) + 1
                if hi > lo:
                    yield _Lines(pos, data, lo, hi)
                    lo = hi
                    continue
                # The line at `lo` is longer than a window.
                number = self._lines.line_of(state, pos + lo)
                newline = data.find(b"\n", lo, size)
                end = pos + newline + 1 if newline >= 0 else min(high, self._line_end(state, number))
                yield _Giant(number, pos + lo, end)
                lo = end - pos
            pos += size

    def _backward(self, state: LogState, low: int, high: int, window: int) -> Iterator[_Lines | _Giant]:
        """The same groups, newest first. `high` and every later block end are line starts."""
        end = high
        while end > low:
            start = max(low, end - WINDOW)
            data = self._reader.read(state.log_id, start, end)
            # The first whole line in the block: `low` is a line start, else after a newline.
            lo = 0 if start == low else data.find(b"\n", 0, len(data) - 1) + 1
            if lo == 0 and start > low:  # the line ending at `end` is longer than the block
                number = self._lines.line_of(state, start)
                line_start = max(low, self._lines.start_of(state, number))
                yield _Giant(number, line_start, end)
                end = line_start
                continue
            hi = len(data)
            while hi > lo:
                first = lo if hi - lo <= window else data.find(b"\n", hi - window - 1, hi - 1) + 1
                if first > lo or (first == lo and hi - lo <= window):
                    yield _Lines(start, data, first, hi)
                    hi = first
                    continue
                # The line ending at `hi` is longer than a window (it starts in this block).
                line_start = max(lo, data.rfind(b"\n", lo, hi - 1) + 1)
                yield _Giant(self._lines.line_of(state, start + line_start), start + line_start, start + hi)
                hi = line_start
            end = start + lo

    def _giant_hit(self, state: LogState, pattern: Pattern, line: _Giant, window: int,
                   deadline: float | None) -> list[Line] | None:
        """Scan one line longer than a window in overlapping slices; at most one hit (its head).
        None when `deadline` passed before the line was scanned to its end."""
        pos = line.start
        while pos < line.end:
            if deadline is not None and self._clock() > deadline:
                return None
            stop = min(line.end, pos + window)
            # A byte either side of a cut inside the line, so that `^` and `$` do not match there.
            lead, tail = int(pos > line.start), int(stop < line.end)
            data = self._reader.read(state.log_id, pos - lead, stop + tail)
            end = len(data) - tail - (not tail and data.endswith(b"\n"))
            if pattern.find(data, lead, end) >= 0:
                head = self._reader.read(state.log_id, line.start, min(line.end, line.start + MAX_LINE_BYTES))
                cut = line.end - line.start > MAX_LINE_BYTES + 1  # +1: its own newline
                return [Line(line.number, line.start, head.rstrip(b"\n"), cut)]
            if stop == line.end:
                break
            pos = max(pos + 1, stop - _OVERLAP)
        return []

    def _hits(self, state: LogState, pattern: Pattern, group: _Lines, last: list[Line]) -> list[Line]:
        """The group's matching lines. Their numbers are counted on from a line whose number is
        known: the last group's last hit when it lies in the same block not far off (cheaper
        than the line index for the many small windows of a regular expression), else the
        line index."""
        data, hits = group.data, list[Line]()
        end = group.hi - (data[group.hi - 1] == 0x0A)  # not past the last line's end: no empty line after it
        at = pattern.find(data, group.lo, end)
        if at < 0:
            return hits
        known = last[-1] if last else None
        near = known is not None and 0 <= known.offset - group.base < len(data) and \
            abs(known.offset - group.start) < _NEAR
        if known is not None and near and known.offset <= group.start:
            number = known.number + data.count(b"\n", known.offset - group.base, group.lo)
        elif known is not None and near:
            number = known.number - data.count(b"\n", group.lo, known.offset - group.base)
        else:
            number = self._lines.line_of(state, group.start)
        counted_to = group.lo
        while at >= 0:
            begin = max(group.lo, data.rfind(b"\n", group.lo, at) + 1)
            stop = data.find(b"\n", at, group.hi)
            stop = group.hi if stop < 0 else stop
            number += data.count(b"\n", counted_to, begin)
            counted_to = begin
            text = data[begin : min(stop, begin + MAX_LINE_BYTES)]
            hits.append(Line(number, group.base + begin, text, stop - begin > MAX_LINE_BYTES))
            if stop + 1 > end:
                break
            at = pattern.find(data, stop + 1, end)
        return hits
