"""Retention over HTTP: retained bytes with absolute line numbers; a cleared log answers ModelArts.2819."""

from __future__ import annotations

import time

import httpx
import orjson
from support.engine import new_job
from support.live import LiveServer
from support.sdk import PROJECT

from jobtail.core.types import TaskRef


def _drop_all_segments(live: LiveServer) -> None:
    """Retention for anything older than a microsecond: every sealed segment is old enough."""
    time.sleep(0.01)
    live.store.apply_retention(1e-6)


def _link(http: httpx.Client, job_id: str) -> str:
    r = http.get(f"/v2/{PROJECT}/training-jobs/{job_id}/tasks/worker-0/logs/url")
    assert r.status_code == 200, r.text
    return str(r.json()["obs_url"])


def test_retained_part_over_http(live: LiveServer) -> None:
    job_id = new_job(live.store, PROJECT, "retained").id
    ref = TaskRef(PROJECT, job_id, "worker-0")
    old = b"".join(b"old line %d ERROR\n" % i for i in range(100)) + b"cut "
    live.store.append(ref, old)
    live.store.seal(ref)
    new = b"kept half\n" + b"".join(b"new line %d ERROR\n" % i for i in range(100, 150))
    live.store.append(ref, new)
    with live.client() as http:
        url = _link(http, job_id)
    _drop_all_segments(live)
    log, start = old + new, len(old)
    assert live.store.state(ref).start_offset == start
    base = f"/v2/{PROJECT}/training-jobs/{job_id}"
    with live.client() as http:
        preview = http.get(f"{base}/tasks/worker-0/logs/preview").json()
        assert preview == {"content": new.decode(), "current_size": len(new), "full_size": len(log)}
        asc = http.get(f"{base}/logs/worker-0", params={"order": "asc", "lines": 2}).json()
        assert (asc["start_line"], asc["end_line"], asc["content"]) == ("101", "102", "kept half\nnew line 100 ERROR")
        below = http.get(f"{base}/logs/worker-0", params={"order": "asc", "lines": 1, "base_line": 5}).json()
        assert (below["start_line"], below["content"]) == ("101", "kept half")
        desc = http.get(f"{base}/logs/worker-0", params={"lines": 1}).json()
        assert (desc["start_line"], desc["content"]) == ("151", "new line 149 ERROR")
        found = http.get(f"{base}/tasks/worker-0/logs/search", params={"q": "ERROR", "limit": 1}).json()
        assert (found["matches"][0]["line"], found["matches"][0]["offset"]) == ("102", start + len(b"kept half\n"))
        with http.stream("GET", f"{base}/tasks/worker-0/logs/stream", params={"offset": 0}) as events:
            for raw in events.iter_lines():
                if raw.startswith("data:"):
                    first = orjson.loads(raw[5:])
                    break
        assert (first["offset"], first["text"][:10]) == (start, "kept half\n")
    with httpx.Client() as anonymous:
        whole = anonymous.get(url, headers={"accept-encoding": "identity"})
        assert (whole.status_code, whole.content) == (200, new)
        assert whole.headers["content-length"] == str(len(new))
        cut = anonymous.get(url, headers={"range": f"bytes={start - 10}-{start + 3}"})
        assert (cut.status_code, cut.content, cut.headers["content-range"]) == (
            206, new[:4], f"bytes {start}-{start + 3}/{len(log)}")
        suffix = anonymous.get(url, headers={"range": f"bytes=-{len(log)}"})
        assert (suffix.status_code, suffix.content) == (206, new)
        inside = anonymous.get(url, headers={"range": f"bytes={start + 1}-{start + 4}"})
        assert (inside.status_code, inside.content) == (206, new[1:5])
        gone = anonymous.get(url, headers={"range": "bytes=0-9"})
        assert gone.status_code == 416
        assert gone.headers["content-range"] == f"bytes */{len(log)}"


def test_cleared_log_answers_2819(live: LiveServer) -> None:
    job_id = new_job(live.store, PROJECT, "cleared").id
    ref = TaskRef(PROJECT, job_id, "worker-0")
    live.store.append(ref, b"line\n" * 10)
    live.store.seal(ref)
    with live.client() as http:
        url = _link(http, job_id)
    _drop_all_segments(live)
    base = f"/v2/{PROJECT}/training-jobs/{job_id}"
    with live.client() as http:
        for path, params in [
            (f"{base}/tasks/worker-0/logs/preview", {}),
            (f"{base}/logs/worker-0", {}),
            (f"{base}/logs/worker-0", {"order": "asc", "base_line": "3"}),
            (f"{base}/tasks/worker-0/logs/search", {"q": "line"}),
        ]:
            r = http.get(path, params=params)
            assert (r.status_code, r.json()["error_code"]) == (400, "ModelArts.2819"), path
    with httpx.Client() as anonymous:
        r = anonymous.get(url)
        assert (r.status_code, r.json()["error_code"]) == (400, "ModelArts.2819")
