"""The search endpoint over HTTP: matches, context, continuation and bad queries."""

from __future__ import annotations

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
