"""The preview equals CONTRACT §10.1's definition over any history of appends, seals and restarts."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import reference_preview
from support.engine import new_job

from jobtail.core.store import LogStore
from jobtail.core.types import TaskRef

# Bytes that stress the preview rules: multi-byte characters (split across appends by the
# random cut points below), invalid UTF-8, NUL, carriage returns, and runs without newlines.
_TEXT = st.lists(
    st.sampled_from(["a", "Z", " ", "\n", "\r", "\x00", "\x1b[31m", "é", "損失", "😀", "\t"]), max_size=40
).map("".join)
_PIECE = st.one_of(
    _TEXT.map(lambda s: s.encode()),
    st.binary(max_size=40),
    st.sampled_from([b"\xff\xfe", b"\xe6\x90", b"\x80\x80\x80", b"x" * 300, b"\n" * 5]),
)
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), _PIECE, st.integers(min_value=0, max_value=3)),
        st.tuples(st.just("seal"), st.none(), st.none()),
        st.tuples(st.just("reopen"), st.none(), st.none()),
    ),
    min_size=1,
    max_size=25,
)

_job_names = (f"prop-{i}" for i in itertools.count())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS, cap=st.sampled_from([1, 7, 64, 200, 5 * 1024 * 1024]))
def test_preview_matches_definition(
    store_factory: Callable[..., LogStore], ops: list[tuple[str, bytes | None, int | None]], cap: int
) -> None:
    options = {"preview_bytes": cap, "seal_bytes": 97, "segment_bytes": 150}
    store = store_factory(**options)
    job = new_job(store, "prop", next(_job_names))
    ref = TaskRef("prop", job.id, "worker-0")
    log = b""
    for op, data, splits in ops:
        if op == "append":
            assert data is not None and splits is not None
            # Cut the piece at random-ish points so characters straddle appends.
            cuts = sorted({(len(data) * k) // (splits + 1) for k in range(1, splits + 1)} | {0, len(data)})
            for a, b in itertools.pairwise(cuts):
                if b > a:
                    full = store.append(ref, data[a:b], offset=len(log)).full_size
                    log += data[a:b]
                    assert full == len(log)
        elif op == "seal":
            store.seal(ref)
        else:
            store.close()
            store = store_factory(**options)
        if log:
            preview = store.preview(store.state(ref))
            assert (preview.content, preview.current_size, preview.full_size) == reference_preview(log, cap)
            assert b"".join(store.read(store.state(ref), 0, len(log))) == log
    state = store.state(ref)
    assert state.end_offset == len(log)
    assert state.line_count == log.count(b"\n")
    store.close()
