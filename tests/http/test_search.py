"""The search endpoint over HTTP: matches, context, continuation and bad queries."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

from support.engine import new_job
from support.live import LiveServer
from support.sdk import PROJECT

from jobtail.core.types import TaskRef


def test_search_over_http(live: LiveServer) -> None:
    job_id = new_job(live.store, PROJECT, "search", node_count=1).id
    log = b"".join(b"step %d loss=%s\n" % (i, b"nan" if i % 1000 == 0 else b"0.1") for i in range(1, 5001))
    live.store.append(TaskRef(PROJECT, job_id, "worker-0"), log)
    path = f"/v2/{PROJECT}/training-jobs/{job_id}/tasks/worker-0/logs/search"
    with live.client() as http:
        r = http.get(path, params={"q": "NaN", "ignore_case": "true", "context": "1", "limit": "2"}).json()
        assert [m["line"] for m in r["matches"]] == ["1000", "2000"]
        assert r["matches"][0]["content"] == "step 1000 loss=nan"
        assert [x["content"] for x in r["matches"][0]["before"]] == ["step 999 loss=0.1"]
        assert (r["complete"], r["stopped_by"], r["next_after_line"]) == (False, "limit", "2000")
        rest = http.get(path, params={"q": "nan", "after_line": r["next_after_line"]}).json()
        assert [m["line"] for m in rest["matches"]] == ["3000", "4000", "5000"] and rest["complete"]
        newest = http.get(path, params={"q": r"loss=n\w+$", "regex": "true", "before_line": "4500", "limit": "1"}).json()
        assert [m["line"] for m in newest["matches"]] == ["4000"] and newest["next_before_line"] == "4000"
        assert newest["matches"][0]["offset"] == log.index(b"step 4000 ")
        for query in ({"q": ""}, {"q": "(", "regex": "true"}, {"q": "x", "limit": "0"}, {"q": "x", "context": "99"},
                      {"q": "x", "after_line": "1", "before_line": "9"}, {"q": "x", "since": "soon"}):
            bad = http.get(path, params=query)
            assert (bad.status_code, bad.json()["error_code"]) == (400, "ModelArts.2764"), query


def _search_path(job_id: str) -> str:
    return f"/v2/{PROJECT}/training-jobs/{job_id}/tasks/worker-0/logs/search"


def test_catastrophic_backtracking_costs_what_a_plain_match_does(live_factory: Callable[..., LiveServer]) -> None:
    """Issue 14's reproduction: `(a+)+$` over four `'a'*26+'b'` lines took 26 s on `re`; on RE2
    it is linear. The bound only catches a return to backtracking (measured: milliseconds)."""
    live = live_factory(search_budget_seconds=10)
    job_id = new_job(live.store, PROJECT, "redos", node_count=1).id
    platform = b"2026-11-27 10:00:00,123 - INFO - [rank0] Reading the data set shards from obs bucket now please wait"
    live.store.append(TaskRef(PROJECT, job_id, "worker-0"), (b"a" * 26 + b"b\n") * 4 + platform + b"!\n")
    with live.client() as http:
        for q, lines in (("(a+)+$", []), (r"(\w+\s?)+$", ["1", "2", "3", "4"])):
            start = time.monotonic()
            r = http.get(_search_path(job_id), params={"q": q, "regex": "true"})
            elapsed = time.monotonic() - start
            assert r.status_code == 200 and r.json()["complete"], r.text
            assert [m["line"] for m in r.json()["matches"]] == lines
            assert elapsed < 2, f"{q} took {elapsed:.1f} s"


def test_python_only_syntax_is_refused_saying_why(live: LiveServer) -> None:
    job_id = new_job(live.store, PROJECT, "syntax", node_count=1).id
    live.store.append(TaskRef(PROJECT, job_id, "worker-0"), b"abab\n")
    with live.client() as http:
        for q, why in ((r"(ab)\1", "backreferences are not supported"), (r"(?P<x>a)(?P=x)", "backreferences"),
                       (r"a(?=b)", "lookahead and lookbehind"), (r"(?<!x)a", "lookahead and lookbehind"),
                       (r"a*+", "possessive"), (r"(?>a)", "atomic groups"), ("(", "missing )"),
                       ("[ab]{900}" * 3, "too complex")):
            r = http.get(_search_path(job_id), params={"q": q, "regex": "true"})
            assert (r.status_code, r.json()["error_code"]) == (400, "ModelArts.2764"), q
            assert r.json()["error_msg"].startswith("Invalid query parameter (q).") and why in r.json()["error_msg"], r.text
        # \A and \Z are a line's ends, as ^ and $ are; a backslash before them keeps them literal.
        r = http.get(_search_path(job_id), params={"q": r"\Aab.b\Z", "regex": "true"}).json()
        assert r["count"] == 1
        r = http.get(_search_path(job_id), params={"q": r"\\A", "regex": "true"}).json()
        assert r["count"] == 0


def _adversarial_log(size: int) -> bytes:
    """Random `a`/`b` lines after one of 32 `a`s. Over the random lines `(?:a|aa)+b[ab]{20}c` has
    more DFA states than RE2 caches, so it falls back to its NFA (~5 MB/s here: the slowest an
    expression of that size gets); on the `a`s, a backtracking engine tries every way of
    splitting them (`re` holds the GIL for seconds there)."""
    raw = random.Random(14).randbytes(size).translate(bytes(b"ab"[i % 2] for i in range(256)))
    return b"a" * 32 + b"\n" + b"\n".join(raw[i : i + 199] for i in range(0, size, 200)) + b"\n"


def test_a_slow_search_keeps_its_budget_and_does_not_stall_the_server(live_factory: Callable[..., LiveServer]) -> None:
    """Issue 14's reproduction: while a pathological search runs, /healthz and a preview still
    answer at once (it runs in the thread pool and RE2 lets go of the GIL), and it stops at its
    budget.

    The bounds only catch a freeze (before: /healthz blocked for the whole search); measured
    figures are in bench/search.py."""
    live = live_factory(search_budget_seconds=1.0)
    ref = TaskRef(PROJECT, new_job(live.store, PROJECT, "slow", node_count=1).id, "worker-0")
    live.store.append(ref, _adversarial_log(24 * 1024 * 1024))
    other = TaskRef(PROJECT, new_job(live.store, PROJECT, "other", node_count=1).id, "worker-0")
    live.store.append(other, b"hello\n")
    outcome: dict[str, Any] = {}

    def search() -> None:
        with live.client() as http:
            start = time.monotonic()
            outcome["response"] = http.get(_search_path(ref.job_id), params={"q": "(?:a|aa)+b[ab]{20}c", "regex": "true"})
            outcome["elapsed"] = time.monotonic() - start

    worker = threading.Thread(target=search)
    with live.client() as http:
        http.get("/healthz")  # the connection is open before the search starts
        worker.start()
        slowest = {"/healthz": 0.0, "preview": 0.0}
        while worker.is_alive():
            for name, path in (("/healthz", "/healthz"),
                               ("preview", f"/v2/{PROJECT}/training-jobs/{other.job_id}/tasks/worker-0/logs/preview")):
                start = time.monotonic()
                assert http.get(path).status_code == 200
                slowest[name] = max(slowest[name], time.monotonic() - start)
            time.sleep(0.02)
        worker.join()
    r = outcome["response"]
    assert r.status_code == 200 and r.json()["stopped_by"] == "time_budget", r.text
    assert r.json()["next_after_line"] is not None and 0 < r.json()["scanned_bytes"] < 24 * 1024 * 1024
    assert outcome["elapsed"] < 1.0 + 3, outcome["elapsed"]
    assert max(slowest.values()) < 0.5, slowest
