"""`…/merged-logs`: a job's task logs merged by arrival over real HTTP, paged, positioned and long-polled."""

from __future__ import annotations

import threading
import time

from support.engine import new_job
from support.live import LiveServer
from support.sdk import PROJECT

from jobtail.core.types import TaskRef


def _job(live: LiveServer, name: str, tasks: int = 3) -> tuple[str, list[TaskRef]]:
    job_id = new_job(live.store, PROJECT, name, node_count=tasks).id
    return job_id, [TaskRef(PROJECT, job_id, f"worker-{i}") for i in range(tasks)]


def test_pages_positions_and_the_rank_filter(live: LiveServer) -> None:
    job_id, refs = _job(live, "merged-pages")
    for step in range(4):
        for i, ref in enumerate(refs):
            live.store.append(ref, f"rank {i} step {step}\n".encode())
        time.sleep(0.02)
    path = f"/v2/{PROJECT}/training-jobs/{job_id}/merged-logs"
    with live.client() as http:
        newest = http.get(path, params={"lines": "5"}).json()
        assert newest["tasks"] == ["worker-0", "worker-1", "worker-2"] and newest["total"] == 12
        assert newest["end"] == "4,4,4" and newest["position"] == 7 and len(newest["lines"]) == 5
        assert [line["content"] for line in newest["lines"]][-1] == "rank 2 step 3"
        everything = http.get(path, params={"at": "0", "lines": "500"}).json()
        contents = [line["content"] for line in everything["lines"]]
        assert sorted(contents) == sorted(f"rank {i} step {s}" for i in range(3) for s in range(4))
        # By arrival, to the time index's precision (a second); the same instant in task order.
        keys = [(line["time"], line["task"], int(line["line"])) for line in everything["lines"]]
        assert keys == sorted(keys)
        times = [line["time"] for line in everything["lines"]]
        before = http.get(path, params={"before": newest["start"], "lines": "500"}).json()
        assert [line["content"] for line in before["lines"]] + [line["content"] for line in newest["lines"]] == contents
        middle = http.get(path, params={"at": "6", "lines": "2"}).json()
        assert middle["position"] == 6 and [line["content"] for line in middle["lines"]] == contents[6:8]
        assert http.get(path, params={"after": middle["end"]}).json()["lines"] == everything["lines"][8:]
        ranks = http.get(path, params={"tasks": "worker-2,worker-0", "at": "0"}).json()
        assert ranks["tasks"] == ["worker-0", "worker-2"] and ranks["total"] == 8
        assert {line["task"] for line in ranks["lines"]} == {"worker-0", "worker-2"}
        logs = {log["task"]: log for log in newest["logs"]}
        assert logs["worker-1"]["last_line"] == "4" and logs["worker-1"]["last_time"] >= times[0]


def test_bad_requests(live: LiveServer) -> None:
    job_id, _ = _job(live, "merged-bad", tasks=2)
    path = f"/v2/{PROJECT}/training-jobs/{job_id}/merged-logs"
    with live.client() as http:
        for query in ({"tasks": "worker-7"}, {"tasks": ""}, {"tasks": "worker-0,worker-0"}, {"after": "1"},
                      {"after": "1,x"}, {"before": "-1,0"}, {"at": "-3"}, {"lines": "501"}, {"wait": "31"},
                      {"after": "0,0", "before": "0,0"}, {"at": "1", "after": "0,0"}):
            r = http.get(path, params=query)
            assert (r.status_code, r.json()["error_code"]) == (400, "ModelArts.2764"), query
        empty = http.get(path).json()
        assert (empty["total"], empty["lines"], empty["end"]) == (0, [], "0,0")
        other = http.get(f"/v2/{PROJECT}/training-jobs/2cd88daa-31a4-40a8-a58f-d186b0e93e4f/merged-logs")
        assert (other.status_code, other.json()["error_code"]) == (400, "ModelArts.2775")


def test_wait_answers_as_soon_as_any_task_writes(live: LiveServer) -> None:
    job_id, refs = _job(live, "merged-wait", tasks=2)
    live.store.append(refs[0], b"first\n")
    path = f"/v2/{PROJECT}/training-jobs/{job_id}/merged-logs"
    with live.client() as http:
        end = http.get(path).json()["end"]
        threading.Timer(0.5, lambda: live.store.append(refs[1], b"from rank 1\n")).start()
        started = time.monotonic()
        r = http.get(path, params={"after": end, "wait": "20"}).json()
        assert time.monotonic() - started < 15  # well before the wait ran out
        assert [(line["task"], line["content"]) for line in r["lines"]] == [("worker-1", "from rank 1")]
        started = time.monotonic()
        quiet = http.get(path, params={"after": r["end"], "wait": "1"}).json()
        assert quiet["lines"] == [] and quiet["end"] == r["end"] and time.monotonic() - started >= 0.9
