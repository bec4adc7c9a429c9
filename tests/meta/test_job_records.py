"""Conformance suite for `jobtail.core.job_records.JobRecords`: every backend, same contract.

Runs once per metadata backend (`meta_url`: a fresh SQLite file, a fresh database on the session's
PostgreSQL server). Job records own their task logs' existence (created and deleted with the job),
so these tests also look at the logs through the log records; nothing here looks at tables or SQL.
"""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.meta_records import (
    EVERY_APPEND,
    Meta,
    ReadPlan,
    append,
    append_all,
    log_id_of,
    make_job,
    new_log,
    open_meta,
    plan_bytes,
    read_plan,
    seal,
)

from jobtail.core.errors import DuplicateJobName
from jobtail.core.types import JobEvent, JobQuery, JobRecord, LogPosition, LogState, RunningRecord, TaskStatus


def test_create_job_stores_job_and_empty_task_logs(meta: Meta) -> None:
    document = {"metadata": {"name": "train", "desc": "ünïcødé ✓"}, "spec": {"nodes": 3, "x": [1, None, 2.5]}}
    job = make_job(name="train", tasks=("worker-0", "worker-1", "worker-2"), document=document)
    meta.jobs.create_job(job)

    assert meta.jobs.get_job("proj-a", job.id) == job
    ids = set()
    for task in job.tasks:
        state = meta.logs.log_state("proj-a", job.id, task)
        assert state is not None
        assert (state.start_offset, state.sealed_offset, state.end_offset, state.line_count) == (0, 0, 0, 0)
        assert state.last_append_at is None
        assert state.head_bytes == 0
        assert meta.logs.log_state_by_id(state.log_id) == state
        assert meta.logs.log_owner(state.log_id) == (job.id, task)
        assert meta.logs.segments(state.log_id) == []
        assert meta.logs.index_entries(state.log_id, 0, 10**12) == []
        assert meta.logs.head_to_seal(state.log_id, 0, 10**6) == []
        plan = read_plan(meta, state.log_id, 0, 10**6)
        assert plan.segments == () and plan.head == ()
        ids.add(state.log_id)
    assert len(ids) == 3, "every task needs its own log"
    assert meta.logs.log_state("proj-a", job.id, "worker-3") is None


def test_duplicate_job_name_in_project_is_refused_atomically(meta: Meta) -> None:
    first = make_job(project="proj-a", name="train")
    meta.jobs.create_job(first)
    dup = make_job(project="proj-a", name="train", tasks=("worker-0", "worker-1"))
    with pytest.raises(DuplicateJobName):
        meta.jobs.create_job(dup)
    # nothing of the refused job was stored
    assert meta.jobs.get_job("proj-a", dup.id) is None
    assert meta.logs.log_state("proj-a", dup.id, "worker-0") is None
    assert meta.logs.log_state("proj-a", dup.id, "worker-1") is None
    # the original is untouched
    assert meta.jobs.get_job("proj-a", first.id) == first

    other = make_job(project="proj-b", name="train")
    meta.jobs.create_job(other)  # same name, another project: fine
    assert meta.jobs.get_job("proj-b", other.id) == other
    assert meta.logs.log_state("proj-b", other.id, "worker-0") is not None


def test_concurrent_create_of_one_name_lets_exactly_one_win(meta: Meta) -> None:
    jobs = [make_job(project="proj-a", name="race") for _ in range(8)]
    barrier = threading.Barrier(len(jobs))

    def create(job: JobRecord) -> bool:
        barrier.wait()
        try:
            meta.jobs.create_job(job)
        except DuplicateJobName:
            return False
        return True

    with ThreadPoolExecutor(len(jobs)) as pool:
        won = list(pool.map(create, jobs))
    assert won.count(True) == 1
    for job, ok in zip(jobs, won, strict=True):
        assert (meta.jobs.get_job("proj-a", job.id) is not None) == ok
        assert (meta.logs.log_state("proj-a", job.id, "worker-0") is not None) == ok


def test_other_projects_job_is_invisible(meta: Meta) -> None:
    job, log_id = new_log(meta, project="proj-a")
    append_all(meta, log_id, [b"secret\n"])

    assert meta.jobs.get_job("proj-b", job.id) is None
    assert meta.logs.log_state("proj-b", job.id, "worker-0") is None
    assert meta.jobs.delete_job("proj-b", job.id) is None
    # the delete from the wrong project did nothing
    assert meta.jobs.get_job("proj-a", job.id) == job
    state = meta.logs.log_state("proj-a", job.id, "worker-0")
    assert state is not None and state.end_offset == 7


def test_unknown_ids(meta: Meta) -> None:
    _, log_id = new_log(meta)
    assert meta.jobs.get_job("proj-a", "no-such-job") is None
    assert meta.logs.log_state("proj-a", "no-such-job", "worker-0") is None
    assert meta.jobs.delete_job("proj-a", "no-such-job") is None
    assert meta.logs.log_state_by_id(log_id + 10_000) is None
    assert meta.logs.log_owner(log_id + 10_000) is None


def test_delete_job_returns_segment_keys_and_removes_everything(meta: Meta) -> None:
    doomed = make_job(name="doomed", tasks=("worker-0", "worker-1"))
    kept = make_job(name="kept", tasks=("worker-0",))
    meta.jobs.create_job(doomed)
    meta.jobs.create_job(kept)
    segment_data: dict[str, bytes] = {}
    doomed_keys = []
    doomed_ids = [log_id_of(meta, doomed, t) for t in doomed.tasks]
    for task, log_id in zip(doomed.tasks, doomed_ids, strict=True):
        append_all(meta, log_id, [b"a\n" * 5, b"b\n" * 5, b"c\n" * 5])
        for n in range(2):
            key = f"jobs/{doomed.id}/{task}/{n}"
            seal(meta, log_id, 10, key, segment_data)
            doomed_keys.append(key)
    kept_id = log_id_of(meta, kept, "worker-0")
    append_all(meta, kept_id, [b"keep\n", b"me\n"])
    kept_segment = seal(meta, kept_id, 5, f"jobs/{kept.id}/worker-0/0", segment_data)
    kept_state = meta.logs.log_state_by_id(kept_id)
    kept_plan = read_plan(meta, kept_id, 0, 8)
    kept_index = meta.logs.index_entries(kept_id, 0, 8)

    deleted = meta.jobs.delete_job("proj-a", doomed.id)
    assert deleted is not None and sorted(deleted.segment_keys) == sorted(doomed_keys)
    assert sorted(deleted.log_ids) == sorted(doomed_ids)

    assert meta.jobs.get_job("proj-a", doomed.id) is None
    for task, log_id in zip(doomed.tasks, doomed_ids, strict=True):
        assert meta.logs.log_state("proj-a", doomed.id, task) is None
        assert meta.logs.log_state_by_id(log_id) is None
        assert meta.logs.log_owner(log_id) is None
        assert meta.logs.segments(log_id) == []
        assert meta.logs.head_to_seal(log_id, 0, 10**6) == []
        assert read_plan(meta, log_id, 0, 30) == ReadPlan((), ())
        assert meta.logs.index_entries(log_id, 0, 10**6) == []
        assert meta.logs.index_floor_line(log_id, 10**6) is None
        assert meta.logs.index_ceil_time(log_id, 0.0) is None
    assert meta.logs.segment_keys(f"jobs/{doomed.id}/") == set()
    assert not set(meta.logs.logs_to_seal(1e12, 1)) & set(doomed_ids)
    assert meta.jobs.delete_job("proj-a", doomed.id) is None

    # the other job is untouched
    assert meta.jobs.get_job("proj-a", kept.id) == kept
    assert meta.logs.log_state_by_id(kept_id) == kept_state
    assert read_plan(meta, kept_id, 0, 8) == kept_plan
    assert meta.logs.index_entries(kept_id, 0, 8) == kept_index
    assert meta.logs.segments(kept_id) == [kept_segment]
    assert meta.logs.segment_keys("jobs/") == {kept_segment.blob_key}

    # the name is free again, and the new job starts from scratch
    again = make_job(name="doomed", tasks=("worker-0",))
    meta.jobs.create_job(again)
    state = meta.logs.log_state("proj-a", again.id, "worker-0")
    assert state is not None and state.end_offset == 0


def _observe(meta: Meta, jobs: list[JobRecord]) -> dict[str, object]:
    """Everything the protocol can tell about `jobs`."""
    seen: dict[str, object] = {}
    for job in jobs:
        seen[f"job {job.id}"] = meta.jobs.get_job(job.project_id, job.id)
        for task in job.tasks:
            state = meta.logs.log_state(job.project_id, job.id, task)
            assert isinstance(state, LogState)
            log_id = state.log_id
            seen[f"state {job.id}/{task}"] = state
            seen[f"by id {log_id}"] = meta.logs.log_state_by_id(log_id)
            seen[f"owner {log_id}"] = meta.logs.log_owner(log_id)
            seen[f"plan {log_id}"] = read_plan(meta, log_id, 0, state.end_offset)
            seen[f"head {log_id}"] = meta.logs.head_to_seal(log_id, state.sealed_offset, 10**6)
            seen[f"segments {log_id}"] = meta.logs.segments(log_id)
            seen[f"index {log_id}"] = meta.logs.index_entries(log_id, 0, 10**9)
            seen[f"floor line {log_id}"] = meta.logs.index_floor_line(log_id, 3)
            seen[f"ceil time {log_id}"] = meta.logs.index_ceil_time(log_id, 1001.5)
    seen["keys"] = meta.logs.segment_keys("")
    seen["to seal"] = sorted(meta.logs.logs_to_seal(1e12, 1))
    return seen


def test_everything_survives_close_and_reopen(meta_url: str) -> None:
    jobs = [
        make_job(project="proj-a", name="one", tasks=("worker-0", "worker-1"), document={"k": ["v", 1, {"n": None}]}),
        make_job(project="proj-b", name="one", tasks=("worker-0",)),
    ]
    segment_data: dict[str, bytes] = {}
    meta = open_meta(meta_url)
    try:
        for job in jobs:
            meta.jobs.create_job(job)
        a0 = log_id_of(meta, jobs[0], "worker-0")
        b0 = log_id_of(meta, jobs[1], "worker-0")
        append_all(meta, a0, [b"first\n", b"second\nthird\n", b"fourth", b"\nfifth\n"], now=1000.25)
        seal(meta, a0, 20, f"jobs/{jobs[0].id}/worker-0/0", segment_data)
        append_all(meta, b0, [b"\x00\xff binary\n"], now=1001.75)
        before = _observe(meta, jobs)
    finally:
        meta.close()
        meta.close()  # idempotent

    meta = open_meta(meta_url)
    try:
        assert _observe(meta, jobs) == before
        state = meta.logs.log_state_by_id(a0)
        assert state is not None and state.end_offset == 32 and state.sealed_offset == 19
        assert not append(meta, a0, 0, b"stale", 3000.0, EVERY_APPEND).stored
        assert append(meta, a0, 32, b"sixth\n", 3000.0, EVERY_APPEND).end_offset == 38
        with pytest.raises(DuplicateJobName):
            meta.jobs.create_job(make_job(project="proj-a", name="one"))
        log = b"first\nsecond\nthird\nfourth\nfifth\nsixth\n"
        assert plan_bytes(read_plan(meta, a0, 0, 38), 0, 38, segment_data) == log
    finally:
        meta.close()


def test_log_ends_and_job_phases_answer_for_many_logs_at_once(meta: Meta) -> None:
    jobs = [make_job(project=p, tasks=("worker-0", "worker-1")) for p in ("proj-a", "proj-b")]
    for job in jobs:
        meta.jobs.create_job(job)
    logs = [log_id_of(meta, job, task) for job in jobs for task in job.tasks]
    assert meta.logs.log_ends(logs) == dict.fromkeys(logs, 0)
    append_all(meta, logs[1], [b"abc", b"de\n"])
    append_all(meta, logs[2], [b"\xff" * 7])
    seal(meta, logs[1], 3, f"jobs/{jobs[0].id}/worker-1/0", {})  # sealing moves no end offset
    assert meta.logs.log_ends([*logs, 999_999]) == {logs[0]: 0, logs[1]: 6, logs[2]: 7, logs[3]: 0}
    assert meta.logs.log_ends([]) == {}

    assert meta.jobs.update_job(dataclasses.replace(jobs[1], phase="Running"), ("Creating",))
    assert meta.jobs.job_phases([j.id for j in jobs] + ["no-such-job"]) == {jobs[0].id: "Creating", jobs[1].id: "Running"}
    assert meta.jobs.job_phases([]) == {}

    meta.jobs.delete_job("proj-a", jobs[0].id)
    assert meta.logs.log_ends(logs) == {logs[2]: 7, logs[3]: 0}
    assert meta.jobs.job_phases([j.id for j in jobs]) == {jobs[1].id: "Running"}


def test_update_job_is_a_compare_and_set_on_the_phase(meta: Meta) -> None:
    job = make_job(name="cas")
    meta.jobs.create_job(job)
    pending = dataclasses.replace(job, phase="Pending", owner="host:1:2:3:t")
    assert meta.jobs.update_job(pending, ("Creating",))
    assert not meta.jobs.update_job(dataclasses.replace(job, phase="Running"), ("Creating",)), "no longer Creating"
    assert meta.jobs.get_job("proj-a", job.id) == pending
    done = dataclasses.replace(pending, phase="Completed", end_time=5, task_statuses=(TaskStatus("worker-0", 0, "ok"),))
    assert meta.jobs.update_job(done, ("Running", "Pending"))
    assert meta.jobs.get_job("proj-a", job.id) == done
    assert meta.jobs.jobs_in_phases(("Completed",), "none") == [done]
    assert meta.jobs.jobs_in_phases(("Completed",), "local") == []
    assert meta.jobs.jobs_in_phases(("Running",), "none") == []


def test_search_jobs_filters_sorts_and_pages_within_one_project(meta: Meta) -> None:
    made = [make_job(project="proj-s", name=f"train_{i}") for i in range(5)]
    made = [dataclasses.replace(j, created_at=1000 + i) for i, j in enumerate(made)]
    for job in made:
        meta.jobs.create_job(job)
    meta.jobs.create_job(make_job(project="proj-other", name="train_0"))
    total, count, page = meta.jobs.search_jobs("proj-s", JobQuery(limit=2))
    assert (total, count, [j.name for j in page]) == (5, 5, ["train_4", "train_3"]), "newest first"
    _, _, second = meta.jobs.search_jobs("proj-s", JobQuery(limit=2, page=1))
    assert [j.name for j in second] == ["train_2", "train_1"]
    _, count, named = meta.jobs.search_jobs("proj-s", JobQuery(name_like="in_3", sort_by="name", descending=False))
    assert (count, [j.name for j in named]) == (1, ["train_3"])
    _, count, _ = meta.jobs.search_jobs("proj-s", JobQuery(name_like="_", limit=50))
    assert count == 5, "_ is a literal, not a wildcard"
    _, count, _ = meta.jobs.search_jobs("proj-s", JobQuery(name_like="%"))
    assert count == 0
    _, count, _ = meta.jobs.search_jobs("proj-s", JobQuery(created_from=1001, created_to=1003))
    assert count == 3


def test_job_events_in_time_order_with_filters(meta: Meta) -> None:
    job = make_job(name="events")
    meta.jobs.create_job(job)
    for t, level, message in ((3, "Info", "started"), (1, "Info", "created"), (7, "Error", "failed: OOM")):
        meta.jobs.add_job_event(job.id, JobEvent(t, level, message, "Job"))
    total, found = meta.jobs.job_events(job.id, offset=0, limit=10, descending=False)
    assert (total, [e.message for e in found]) == (3, ["created", "started", "failed: OOM"])
    _, newest = meta.jobs.job_events(job.id, offset=0, limit=1, descending=True)
    assert [e.message for e in newest] == ["failed: OOM"]
    assert meta.jobs.job_events(job.id, offset=0, limit=10, descending=False, level="Error")[0] == 1
    assert meta.jobs.job_events(job.id, offset=0, limit=10, descending=False, pattern="OOM")[0] == 1
    assert meta.jobs.job_events(job.id, offset=0, limit=10, descending=False, pattern="%")[0] == 0
    assert meta.jobs.job_events(job.id, offset=0, limit=10, descending=False, start=2, end=3)[0] == 1
    meta.jobs.delete_job("proj-a", job.id)
    assert meta.jobs.job_events(job.id, offset=0, limit=10, descending=False) == (0, [])


def test_running_records_are_written_by_the_owner_only_and_survive_phase_changes(meta: Meta) -> None:
    job = dataclasses.replace(make_job(name="attempts"), phase="Running", owner="host/1")
    meta.jobs.create_job(job)
    first = RunningRecord(start_at=1_700_000_000, start_type="init_or_rescheduled", end_at=1_700_000_009,
                          end_reason="Killed by signal 9 (SIGKILL)", end_related_task="worker-0",
                          end_recover="job_reschedule", log_starts={"worker-0": LogPosition(0, 1)})
    second = RunningRecord(start_at=1_700_000_010, start_type="restarted",
                           log_starts={"worker-0": LogPosition(1234, 57)})
    assert meta.jobs.set_running_records(job.id, "host/1", (first, second))
    assert not meta.jobs.set_running_records(job.id, "host/2", ())  # not the owner: nothing written
    assert meta.jobs.get_job("proj-a", job.id).running_records == (first, second)  # type: ignore[union-attr]
    assert meta.jobs.update_job(dataclasses.replace(job, phase="Completed", running_records=()), ("Running",))
    stored = meta.jobs.get_job("proj-a", job.id)
    assert stored is not None and stored.phase == "Completed" and stored.running_records == (first, second)
