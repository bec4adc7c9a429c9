"""Search finds exactly the lines the reference finds, forwards, backwards and across budgets."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import reference_lines
from support.engine import new_job

from jobtail.core import search as search_module
from jobtail.core.errors import InvalidPattern
from jobtail.core.search import compile_pattern
from jobtail.core.store import LogStore
from jobtail.core.types import IndexPolicy, TaskRef

_names = (f"search-{i}" for i in itertools.count())
_WORDS = [b"loss", b"LOSS", b"nan", b"\xe6\x90\x8d", b" ", b"\n", b"\n", b"epoch 1", b"\xff", b"x" * 30]


def _log(store_factory: Callable[..., LogStore], log: bytes) -> tuple[LogStore, TaskRef]:
    store = store_factory(seal_bytes=97, segment_bytes=200, index_policy=IndexPolicy(every_bytes=23, every_seconds=1e9))
    ref = TaskRef("search", new_job(store, "search", next(_names)).id, "worker-0")
    for i in range(0, len(log), 41):
        store.append(ref, log[i : i + 41])
        if i % 123 == 0:
            store.seal(ref)
    return store, ref


def _expected(log: bytes, pattern: re.Pattern[bytes]) -> list[tuple[int, bytes]]:
    return [(n, line) for n, line in enumerate(reference_lines(log), 1) if pattern.search(line)]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.sampled_from(_WORDS), max_size=120), query=st.sampled_from(["loss", "nan", "損", "epoch 1", "^x+$"]),
       ignore_case=st.booleans(), window=st.sampled_from([16, 64, 4096]), limit=st.integers(1, 7))
def test_search_matches_reference(store_factory: Callable[..., LogStore], monkeypatch: pytest.MonkeyPatch,
                                  words: list[bytes], query: str, ignore_case: bool, window: int, limit: int) -> None:
    regex = query.startswith("^")
    # Lines longer than a window are searched in slices overlapping by _OVERLAP bytes, so a match
    # longer than that may be missed there (documented); literal queries here are 7 bytes at most,
    # and the whole-line regular expression runs only on windows that hold every line whole.
    monkeypatch.setattr(search_module, "WINDOW", 4096 if regex else window)
    monkeypatch.setattr(search_module, "_OVERLAP", 8)
    log = b"".join(words) or b"empty"
    store, ref = _log(store_factory, log)
    pattern = compile_pattern(query, regex=regex, ignore_case=ignore_case)
    source = query.encode() if regex else re.escape(query.encode())
    expected = _expected(log, re.compile(source, re.IGNORECASE if ignore_case else 0))

    forward, after = [], None
    while True:
        result = store.search(store.state(ref), pattern, after_line=after, limit=limit)
        forward += [(m.line.number, m.line.text) for m in result.matches]
        if result.stopped is None:
            break
        after = result.next_line
    assert forward == expected

    backward, before = [], None
    while True:
        result = store.search(store.state(ref), pattern, before_line=before if before is not None else 10**9, limit=limit)
        backward += [(m.line.number, m.line.text) for m in result.matches]
        if result.stopped is None:
            break
        before = result.next_line
    assert backward == expected[::-1]
    store.close()


def test_context_offsets_and_budget(store_factory: Callable[..., LogStore], monkeypatch: pytest.MonkeyPatch) -> None:
    log = b"".join(b"line %d%s\n" % (i, b" ERROR" if i % 10 == 0 else b"") for i in range(1, 201))
    store, ref = _log(store_factory, log)
    result = store.search(store.state(ref), compile_pattern("ERROR", False, False), context=2, limit=3)
    assert [m.line.number for m in result.matches] == [10, 20, 30]
    first = result.matches[0]
    assert [x.text for x in first.before] == [b"line 8", b"line 9"]
    assert [x.text for x in first.after] == [b"line 11", b"line 12"]
    assert log[first.line.offset : first.line.offset + 14] == b"line 10 ERROR\n"
    assert (result.stopped, result.next_line) == ("limit", 30)

    monkeypatch.setattr(search_module, "WINDOW", 100)
    result = store.search(store.state(ref), compile_pattern("ERROR", False, False), budget_seconds=0.0)
    assert result.stopped == "time_budget" and result.next_line is not None
    resumed = store.search(store.state(ref), compile_pattern("ERROR", False, False), after_line=result.next_line)
    assert [m.line.number for m in result.matches + resumed.matches] == list(range(10, 201, 10))


def test_the_budget_stops_inside_a_long_line_unless_it_is_the_first(store_factory: Callable[..., LogStore],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget is checked between the slices of a line longer than a window too; a search
    stops before such a line when time runs out inside it, but scans it whole when it is the
    first line it scans, so that every continuation makes progress."""
    monkeypatch.setattr(search_module, "WINDOW", 1024)
    monkeypatch.setattr(search_module, "_OVERLAP", 64)
    store, ref = _log(store_factory, b"short\n" + b"x" * 5000 + b"\n" + b"x tail\n")
    pattern = compile_pattern("x", False, False)

    def clock(*times: float) -> Callable[[], float]:
        ticks = iter(times)
        return lambda: next(ticks, 9.0)  # then long past any deadline

    monkeypatch.setattr(store._searcher, "_clock", clock(0.0, 0.1))  # deadline 1.0; in time after line 1
    first = store.search(store.state(ref), pattern, budget_seconds=1.0)
    assert (first.matches, first.stopped, first.next_line, first.scanned_bytes) == ([], "time_budget", 1, 6)
    monkeypatch.setattr(store._searcher, "_clock", clock(0.0))  # out of time at once
    second = store.search(store.state(ref), pattern, after_line=first.next_line, budget_seconds=1.0)
    assert [m.line.number for m in second.matches] == [2] and second.matches[0].line.text == b"x" * 5000
    assert (second.stopped, second.next_line) == ("time_budget", 2)
    third = store.search(store.state(ref), pattern, after_line=second.next_line, budget_seconds=100.0)
    assert [m.line.number for m in third.matches] == [3] and third.stopped is None
    store.close()


def test_bad_regular_expressions_are_bad_queries() -> None:
    with pytest.raises(InvalidPattern, match="missing"):
        compile_pattern("(unclosed", regex=True, ignore_case=False)
    with pytest.raises(InvalidPattern, match="backreferences are not supported"):
        compile_pattern(r"(a)\1", regex=True, ignore_case=False)
    assert compile_pattern(r"(a)\\1", regex=True, ignore_case=False).find(b"a\\1") == 0
    assert compile_pattern("(literal", regex=False, ignore_case=False).find(b"a (literal)") == 2
    assert compile_pattern("LIT", regex=False, ignore_case=True).find(b"a (literal)") == 3


# -- the engine against Python's `re` ------------------------------------------------------------

# Bytes the logs are made of: ASCII letters of both cases, Latin-1 letters that only Unicode
# folding would pair (é/É as UTF-8 and as raw bytes), CJK, invalid UTF-8, tabs, \r. Not \v:
# RE2's \s leaves it out (documented), Python's takes it.
_LOG_BYTES = [b"a", b"b", b"A", b"B", b"ab", b"x", b"1", b"9", b" ", b"\t", b"\r", b"_", b"-", b".",
              "é".encode(), "É".encode(), b"\xe9", b"\xc9", "損".encode(), b"\xff", b"\xc3", b"\x00", b"\n"]
_ATOMS = ["a", "b", "A", "x", "1", ".", r"\d", r"\w", r"\W", r"\s", r"\S", "[ab]", "[^a]", "[a-x]", "[0-9_]",
          r"\.", r"\xe9", r"\xc9", "é", "損", r"\xff", r"\t", r"\b", r"\B", "^", "$"]
_BOUNDED = ["", "", "", "?", "{2}", "{1,3}", "??"]
_UNBOUNDED = ["*", "+", "*?", "+?"]


@st.composite
def _regexes(draw: st.DrawFn, depth: int = 0) -> str:
    """Patterns both engines take. Only bounded repeats, but for one atom at the top: `re`
    backtracks, and the reference must finish on lines of a thousand bytes."""
    parts = []
    count = draw(st.integers(1, 4))
    free = draw(st.integers(0, count)) if depth == 0 else -1  # the atom that may repeat freely
    for i in range(count):
        if depth < 2 and draw(st.integers(0, 4)) == 0:
            inner = "|".join(draw(st.lists(_regexes(depth + 1), min_size=1, max_size=3)))
            atom, group = (f"(?:{inner})" if draw(st.booleans()) else f"({inner})"), True
        else:
            atom, group = draw(st.sampled_from(_ATOMS)), False
        if atom in ("^", "$", r"\b", r"\B"):
            quantifier = ""
        elif i == free and not group:
            quantifier = draw(st.sampled_from(_UNBOUNDED))
        else:
            quantifier = draw(st.sampled_from(_BOUNDED))
        parts.append(atom + quantifier)
    return "".join(parts)


@st.composite
def _logs(draw: st.DrawFn) -> bytes:
    """Short lines, and now and then a long one (up to 1.5 KB, longer than a test window)."""
    pieces = draw(st.lists(st.sampled_from(_LOG_BYTES), max_size=300))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(pieces)))
        pieces[at:at] = [draw(st.sampled_from(_LOG_BYTES[:12])) * draw(st.integers(300, 1500))]
    return b"".join(pieces)


def _reference(query: str, ignore_case: bool) -> Callable[[bytes], bool | None]:
    """Whether `re` finds the query in a line; None where `re` is not the reference: Python
    before 3.14 never matches \\B in an empty string (a quirk 3.14 dropped), RE2 does."""
    compiled = re.compile(query.encode(), re.IGNORECASE if ignore_case else 0)
    return lambda line: None if not line and "\\B" in query else bool(compiled.search(line))


@settings(max_examples=1000, deadline=None)
@given(query=_regexes(), log=_logs(), ignore_case=st.booleans())
def test_regular_expressions_match_the_lines_python_re_matches(query: str, log: bytes, ignore_case: bool) -> None:
    """Per line, RE2 in jobtail's mode and `re` on bytes agree for every pattern both take:
    invalid UTF-8, non-ASCII letters under ignore_case (only ASCII folds) and long lines."""
    reference = _reference(query, ignore_case)
    pattern = compile_pattern(query, regex=True, ignore_case=ignore_case)
    for line in reference_lines(log) or [b""]:
        assert reference(line) in (None, pattern.find(line) >= 0), line


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(query=_regexes(), log=_logs(), ignore_case=st.booleans())
def test_searching_a_stored_log_finds_the_lines_python_re_finds(store_factory: Callable[..., LogStore],
                                                               monkeypatch: pytest.MonkeyPatch, query: str,
                                                               log: bytes, ignore_case: bool) -> None:
    """The same through the store: windows cut at newlines, lines longer than a window scanned
    in overlapping slices (a match longer than the overlap there may be missed: documented)."""
    monkeypatch.setattr(search_module, "WINDOW", 4096)
    monkeypatch.setattr(search_module, "_MIN_WINDOW", 1024)
    monkeypatch.setattr(search_module, "_STEP_WORK", 1)  # the smallest window for every expression
    monkeypatch.setattr(search_module, "_OVERLAP", 512)
    log = log or b"\n"
    reference = _reference(query, ignore_case)
    lines = reference_lines(log)
    expected = [n for n, line in enumerate(lines, 1) if reference(line)]
    unknown = {n for n, line in enumerate(lines, 1) if reference(line) is None}
    longest = re.compile(query.encode(), re.IGNORECASE if ignore_case else 0)
    long_match = any(len(line) > 1024 and (m := longest.search(line)) and m.end() - m.start() > 512
                     for line in lines)
    store = store_factory(seal_bytes=2048, segment_bytes=4096)
    ref = TaskRef("search", new_job(store, "search", next(_names)).id, "worker-0")
    for i in range(0, len(log), 1500):
        store.append(ref, log[i : i + 1500])
    pattern = compile_pattern(query, regex=True, ignore_case=ignore_case)
    found, after = [], None
    while True:
        result = store.search(store.state(ref), pattern, after_line=after, limit=50)
        found += [m.line.number for m in result.matches]
        if result.stopped is None:
            break
        after = result.next_line
    newest_first, before = [], 10**9
    while True:
        result = store.search(store.state(ref), pattern, before_line=before, limit=50)
        newest_first += [m.line.number for m in result.matches]
        if result.stopped is None:
            break
        before = result.next_line
    store.close()
    for scan in (found, newest_first[::-1]):
        if long_match:
            assert set(scan) - unknown <= set(expected)
        else:
            assert [n for n in scan if n not in unknown] == expected
