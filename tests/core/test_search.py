"""Search finds exactly the lines the reference finds, forwards, backwards and across budgets."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import reference_lines

from jobtail.core import search as search_module
from jobtail.core.errors import InvalidQueryParameter
from jobtail.core.search import compile_pattern
from jobtail.core.store import LogStore
from jobtail.core.types import IndexPolicy, TaskRef

_names = (f"search-{i}" for i in itertools.count())
_WORDS = [b"loss", b"LOSS", b"nan", b"\xe6\x90\x8d", b" ", b"\n", b"\n", b"epoch 1", b"\xff", b"x" * 30]


def _log(store_factory: Callable[..., LogStore], log: bytes) -> tuple[LogStore, TaskRef]:
    store = store_factory(seal_bytes=97, segment_bytes=200, index_policy=IndexPolicy(every_bytes=23, every_seconds=1e9))
    ref = TaskRef("search", store.create_job("search", next(_names)).id, "worker-0")
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
        result = store.search(ref, pattern, after_line=after, limit=limit)
        forward += [(m.line.number, m.line.text) for m in result.matches]
        if result.stopped is None:
            break
        after = result.next_line
    assert forward == expected

    backward, before = [], None
    while True:
        result = store.search(ref, pattern, before_line=before if before is not None else 10**9, limit=limit)
        backward += [(m.line.number, m.line.text) for m in result.matches]
        if result.stopped is None:
            break
        before = result.next_line
    assert backward == expected[::-1]
    store.close()


def test_context_offsets_and_budget(store_factory: Callable[..., LogStore], monkeypatch: pytest.MonkeyPatch) -> None:
    log = b"".join(b"line %d%s\n" % (i, b" ERROR" if i % 10 == 0 else b"") for i in range(1, 201))
    store, ref = _log(store_factory, log)
    result = store.search(ref, compile_pattern("ERROR", False, False), context=2, limit=3)
    assert [m.line.number for m in result.matches] == [10, 20, 30]
    first = result.matches[0]
    assert [x.text for x in first.before] == [b"line 8", b"line 9"]
    assert [x.text for x in first.after] == [b"line 11", b"line 12"]
    assert log[first.line.offset : first.line.offset + 14] == b"line 10 ERROR\n"
    assert (result.stopped, result.next_line) == ("limit", 30)

    monkeypatch.setattr(search_module, "WINDOW", 100)
    result = store.search(ref, compile_pattern("ERROR", False, False), budget_seconds=0.0)
    assert result.stopped == "time_budget" and result.next_line is not None
    resumed = store.search(ref, compile_pattern("ERROR", False, False), after_line=result.next_line)
    assert [m.line.number for m in result.matches + resumed.matches] == list(range(10, 201, 10))


def test_bad_regular_expressions_are_bad_queries() -> None:
    with pytest.raises(InvalidQueryParameter):
        compile_pattern("(unclosed", regex=True, ignore_case=False)
    assert compile_pattern("(literal", regex=False, ignore_case=False).find(b"a (literal)") == 2
    assert compile_pattern("LIT", regex=False, ignore_case=True).find(b"a (literal)") == 3
