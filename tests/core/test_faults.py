"""Which failures restart a job, how soon, and the reason read from the end of a task log."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.engine import new_job

from jobtail.core.errors import InvalidJob
from jobtail.core.failures import MAX_REASON_CHARS, TAIL_BYTES, traceback_line, traceback_reason
from jobtail.core.faults import EXIT, HANG, LOST, SIGNAL, FaultPolicy, backoff_seconds, check_annotations, signal_kind
from jobtail.core.store import LogStore
from jobtail.core.types import LogState, TaskRef


def test_only_failures_that_are_not_the_users_code_count_unless_unconditional() -> None:
    policy = FaultPolicy.from_annotations({"fault-tolerance/job-retry-num": "2", "other": "kept"})
    assert [policy.counts(kind) for kind in (SIGNAL, LOST, HANG, EXIT)] == [True, True, False, False]
    assert policy.restarts(SIGNAL, 2) and not policy.restarts(SIGNAL, 3)
    everything = FaultPolicy.from_annotations({"fault-tolerance/job-retry-num": "1",
                                               "fault-tolerance/job-unconditional-retry": "true",
                                               "fault-tolerance/hang-retry": "TRUE"})
    assert all(everything.counts(kind) for kind in (SIGNAL, LOST, HANG, EXIT))
    assert not FaultPolicy.from_annotations({"fault-tolerance/hang-retry": "true"}).counts(HANG)  # no retries


def test_signals_and_their_shell_codes() -> None:
    assert [signal_kind(137, 9), signal_kind(139, None), signal_kind(135, None)] == [SIGNAL] * 3
    assert [signal_kind(143, 15), signal_kind(1, None), signal_kind(134, 6)] == [EXIT] * 3


def test_no_restart_loop_is_faster_than_the_backoff() -> None:
    assert [backoff_seconds(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert backoff_seconds(100) == 30


@pytest.mark.parametrize("annotations", [
    {"fault-tolerance/job-retry-num": "١"}, {"fault-tolerance/job-retry-num": " 1"},
    {"fault-tolerance/job-unconditional-retry": "1"}, {"x\0": "y"}, {f"k{i}": "v" for i in range(65)},
])
def test_unreadable_annotations_are_refused(annotations: dict[str, str]) -> None:
    with pytest.raises(InvalidJob) as refused:
        check_annotations(annotations)
    assert refused.value.field == "annotations"


def test_the_reason_is_the_last_tracebacks_final_line() -> None:
    tail = (b"Traceback (most recent call last):\n  File \"a.py\", line 1\nValueError: old\n"
            b"noise\nTraceback (most recent call last):\n  File \"b.py\", line 9, in <module>\n    boom()\n"
            b"    ^^^^^^\n\x1b[31mtorch.OutOfMemoryError: CUDA out of memory\x1b[0m\n"
            b"[ModelArts Service Log][ERROR][2026/01/01 00:00:00,000] exit with 1\n")
    assert traceback_line(tail) == "torch.OutOfMemoryError: CUDA out of memory"
    assert traceback_line(b"no traceback here\n") is None
    long = traceback_line(b"Traceback (most recent call last):\nE: " + b"x" * 1000 + b"\n")
    assert long is not None and len(long) == MAX_REASON_CHARS and long.endswith("…")


@pytest.mark.parametrize("meta_url", ["sqlite"], indirect=True)
def test_the_reason_costs_one_bounded_read_at_the_end_of_the_log(store: LogStore,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ref = TaskRef("proj-faults", new_job(store, "proj-faults", "big").id, "worker-0")
    store.append(ref, b"Traceback (most recent call last):\nOldError: long ago\n" + b"noise\n" * 200_000)
    store.seal(ref)
    at = store.state(ref).end_offset
    store.append(ref, b"Traceback (most recent call last):\n  File \"x\"\nKeyError: 'lr'\n", at)
    read: list[tuple[int, int]] = []
    real = store.read

    def counted(state: LogState, start: int, end: int) -> Iterator[bytes]:
        read.append((start, end))
        return real(state, start, end)

    monkeypatch.setattr(store, "read", counted)
    state = store.state(ref)
    assert traceback_reason(store, state, 0) == "KeyError: 'lr'"
    assert read == [(state.end_offset - TAIL_BYTES, state.end_offset)]
    assert traceback_reason(store, state, state.end_offset) is None  # nothing of the attempt yet
    store.append(ref, b"noise\n" * 20_000, state.end_offset)
    assert traceback_reason(store, store.state(ref), 0) is None  # none in the last TAIL_BYTES: not looked for before
