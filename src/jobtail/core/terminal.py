"""What a terminal shows for one line of a log: carriage returns, backspaces and erase-line applied.

Progress bars (tqdm, Keras, pip, rich) redraw a line by sending `\\r` (back to the line's start)
and writing over it, or by erasing it with `ESC[K`. Stored, such a line holds every state it went
through; shown, it should hold its last. `final_state(text)` replays one line (without its
newline) onto a row of character cells, as a terminal does:

- `\\r` moves the cursor to column 0 and `\\b` one column back; text overwrites the cells under
  the cursor and moves it on;
- `ESC[K` (`ESC[0K`) erases from the cursor to the end of the row, `ESC[1K` blanks the row up to
  and including the cursor, `ESC[2K` blanks the whole row (the cursor stays);
- SGR sequences (`ESC[…m`: colours, bold, …) style the characters written after them and are
  re-emitted wherever the style changes in the result, so colours survive the replay; the
  style carries over `\\r` as in a terminal;
- every other escape sequence (cursor movement, window titles, hyperlinks) cannot be shown in
  one row and is dropped.

Columns are characters (a wide character counts as one). The newline count never changes, so
line numbers and search agree with what is shown. A line with none of `\\r`, `\\b` or a non-SGR
escape sequence is returned unchanged, at the cost of one scan.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\r\b]|\x1b(?!\[[0-9;:]*m)")  # anything that makes a replay necessary
_SGR = re.compile(r"\x1b\[([0-9;:]*)m")
# One token of a segment: an SGR sequence (group 1), an erase-line sequence (group 2), another
# CSI sequence, an OSC string (to BEL or ST, or the end), another escape, or a backspace.
_TOKEN = re.compile(
    r"\x1b\[([0-9;:]*)m|\x1b\[([012]?)K|\x1b\[[0-?]*[ -/]*[@-~]?|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[ -/]*[0-~]?|\x08"
)
_ERASES_ALL = re.compile(r"(?:\x1b\[[0-9;:]*m)*\x1b\[[02]?K")  # a segment that starts by erasing the row
_MAX_STYLE = 8  # SGR sequences kept per style (since the last reset); older ones are dropped
Style = tuple[str, ...]


def final_state(text: str) -> str:
    """The line as a terminal shows it once every byte of it was written (see the module docstring)."""
    if _CONTROL.search(text) is None:
        return text
    segments = text.split("\r")
    first = _first_relevant(segments)
    relevant = _relevant(segments, first)
    style: Style = _style_after((), "\r".join(segments[:first]))
    if len(relevant) == 1 and _CONTROL.search(segments[max(relevant)]) is None:
        last = max(relevant)  # the usual progress bar: one plain segment covers all the others
        return "".join(_style_after(style, "\r".join(segments[first:last]))) + segments[last]
    chars: list[str] = []
    styles: list[Style] = []
    for index in range(first, len(segments)):
        segment = segments[index]
        if index in relevant:  # noqa: SIM108 (the branch's comment says why)
            style = _replay(segment, style, chars, styles)
        else:  # overwritten by a later, wider segment: only its styling lives on
            style = _style_after(style, segment)
    return _emit(chars, styles)


def _first_relevant(segments: list[str]) -> int:
    """The last segment that begins by erasing the row: nothing written before it shows."""
    for index in range(len(segments) - 1, 0, -1):
        if _ERASES_ALL.match(segments[index]):
            return index
    return 0


def _relevant(segments: list[str], first: int) -> set[int]:
    """Indexes of the segments (from `first`) whose cells may survive: a segment is hidden when a
    later plain segment (no backspace or escape other than SGR) is at least as wide."""
    relevant: set[int] = set()
    widest_plain = 0  # an empty segment writes nothing
    for index in range(len(segments) - 1, first - 1, -1):
        segment = segments[index]
        plain = _CONTROL.search(segment) is None
        width = len(_SGR.sub("", segment)) if plain else -1
        if not plain or width > widest_plain:
            relevant.add(index)
        if plain and width > widest_plain:
            widest_plain = width
    return relevant


def _restyle(style: Style, params: str) -> Style:
    """The style after the SGR sequence with `params`: a reset (0 or nothing) first clears it."""
    codes = params.replace(":", ";").split(";")
    if codes[0] in ("", "0") and len(codes) == 1:
        return ()
    if codes[0] in ("", "0"):
        return (f"\x1b[{params}m",)
    kept = (*style, f"\x1b[{params}m")
    return kept[-_MAX_STYLE:]


def _style_after(style: Style, text: str) -> Style:
    for match in _SGR.finditer(text):
        style = _restyle(style, match.group(1))
    return style


def _replay(segment: str, style: Style, chars: list[str], styles: list[Style]) -> Style:
    """Write one segment from column 0 onto the cells; returns the style in force after it."""
    cursor, pos = 0, 0
    for match in _TOKEN.finditer(segment):
        if match.start() > pos:
            cursor = _write(segment[pos : match.start()], style, cursor, chars, styles)
        pos = match.end()
        token = match.group(0)
        if match.group(1) is not None:
            style = _restyle(style, match.group(1))
        elif match.group(2) is not None:
            mode = match.group(2) or "0"
            if mode == "0":
                del chars[cursor:], styles[cursor:]
            else:
                stop = len(chars) if mode == "2" else min(cursor + 1, len(chars))
                chars[:stop] = [" "] * stop
                styles[:stop] = [()] * stop
        elif token == "\b":
            cursor = max(0, cursor - 1)
    if pos < len(segment):
        _write(segment[pos:], style, cursor, chars, styles)
    return style


def _write(run: str, style: Style, cursor: int, chars: list[str], styles: list[Style]) -> int:
    end = cursor + len(run)
    chars[cursor:end] = run
    styles[cursor:end] = [style] * len(run)
    return end


def _emit(chars: list[str], styles: list[Style]) -> str:
    out: list[str] = []
    current: Style = ()
    start = 0
    for index in range(1, len(chars) + 1):
        if index < len(chars) and styles[index] is styles[start]:
            continue
        style = styles[start]
        if style != current:
            if current:
                out.append("\x1b[0m")
            out.extend(style)
            current = style
        out.append("".join(chars[start:index]))
        start = index
    if current:
        out.append("\x1b[0m")
    return "".join(out)
