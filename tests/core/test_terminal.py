"""A line's final state: what a terminal shows after carriage returns, backspaces and erases."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from jobtail.core.terminal import final_state

RED, GREEN, RESET = "\x1b[31m", "\x1b[32m", "\x1b[0m"


@pytest.mark.parametrize(("raw", "shown"), [
    ("plain text", "plain text"),
    (f"{RED}colour only{RESET}", f"{RED}colour only{RESET}"),  # SGR alone: unchanged
    ("windows line\r", "windows line"),
    (" 10%|#         | 1/10\r 50%|#####     | 5/10\r100%|##########| 10/10", "100%|##########| 10/10"),
    ("abcdef\rXY", "XYcdef"),  # a shorter redraw leaves the rest, as in a terminal
    ("downloading 10 MB\r\x1b[Kdone", "done"),  # pip / rich: return and erase to the end
    ("long old state\rnew\x1b[K", "new"),
    ("abcdef\r\x1b[2Kxy", "xy"),
    ("abcdef\x1b[2K", "      "),
    ("abc\x1b[1K", "   "),
    ("ab\bX", "aX"),
    ("\b\bstart", "start"),
    ("a\x1b[?25lb\x1b]0;title\x07c\x1b[3Ad", "abcd"),  # what one row cannot show is dropped
    ("a\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "alink"),
    ("", ""),
    ("\r\r", ""),
])
def test_final_state(raw: str, shown: str) -> None:
    assert final_state(raw) == shown


def test_colours_survive_the_replay() -> None:
    # Keras: each redraw repeats the styled prefix; the colour of what stays visible is kept.
    assert final_state(f"{GREEN}1/3{RESET} loss\r{GREEN}3/3{RESET} loss") == f"{GREEN}3/3{RESET} loss"
    # A colour set before the \r styles what is written after it, as the terminal's state does.
    assert final_state(f"{RED}old\rnew") == f"{RED}new"
    # Cells left from an older state keep their own colour.
    assert final_state(f"{RED}abcdef{RESET}\rXY") == f"{RESET}XY{RED}cdef{RESET}".removeprefix(RESET)


def test_a_long_progress_line_is_replayed_quickly() -> None:
    updates = "".join(f"\r{i:3d}%|{'#' * (i // 10):<10}| {i}/100 [00:01<00:00, 99.9it/s]" for i in range(101))
    line = updates * 200  # about 1 MiB of redraws, one newline
    assert final_state(line) == "100%|##########| 100/100 [00:01<00:00, 99.9it/s]"


_PIECES = st.lists(st.sampled_from(["a", "bc", "\r", "\b", "\x1b[K", "\x1b[1K", "\x1b[2K", RED, RESET, "\x1b[5A",
                                    "\x1b]0;t\x07", "é"]), max_size=20).map("".join)


@given(_PIECES)
def test_the_result_holds_no_control_but_sgr(raw: str) -> None:
    shown = final_state(raw)
    assert "\r" not in shown and "\b" not in shown
    assert final_state(shown) == shown  # showing what is shown changes nothing


def _screen(text: str) -> list[str]:
    """A plain terminal model, character by character: the reference for `final_state`."""
    cells: list[str] = []
    cursor = 0
    i = 0
    while i < len(text):
        if text.startswith("\x1b[", i):
            end = i + 2
            while not text[end].isalpha():
                end += 1
            code, mode = text[end], text[i + 2 : end]
            if code == "K":
                if mode in ("", "0"):
                    del cells[cursor:]
                else:
                    stop = len(cells) if mode == "2" else min(cursor + 1, len(cells))
                    cells[:stop] = [" "] * stop
            i = end + 1
            continue
        if text.startswith("\x1b]", i):
            i = text.index("\x07", i) + 1
            continue
        ch = text[i]
        if ch == "\r":
            cursor = 0
        elif ch == "\b":
            cursor = max(0, cursor - 1)
        else:
            cells[cursor : cursor + 1] = [ch]
            cursor += 1
        i += 1
    return cells


@given(_PIECES)
@example("a\r\x1b[2K")  # erased to blanks: the row shows nothing, like an empty one
def test_the_text_shown_is_a_terminals(raw: str) -> None:
    shown = final_state(raw)
    visible = "".join(_screen(shown.replace(RED, "").replace(RESET, "")))
    # Blanks an erase left at the end of the row may be dropped: they show as nothing either way.
    assert visible.rstrip(" ") == "".join(_screen(raw.replace(RED, "").replace(RESET, ""))).rstrip(" ")
