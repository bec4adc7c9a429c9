"""The file head (`jobtail.meta.file_head`) through the real store: any history of appends, seals,
reopenings and crashes between a head write and its commit leaves exactly the acknowledged bytes,
with their arrival times; a crash by SIGKILL at that point in a real process; seals that do not
wait for the appenders' lock; head files that become garbage once sealed."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.engine import Engine, backends_of, new_job, open_engine

from jobtail.core.errors import JobNotFound
from jobtail.core.store import LogStore
from jobtail.core.types import Arrival, TaskRef
from jobtail.meta.file_head import FileHeadLogRecords

PROJECT = "proj-file-head"


class Crash(Exception):
    """Raised by the fault-injection hook: the append's bytes are durable in the head file, its
    commit never happens — what a SIGKILL at that point leaves."""


def heads_of(store: LogStore) -> FileHeadLogRecords:
    logs = backends_of(store).logs
    assert isinstance(logs, FileHeadLogRecords), "SQLite's default head is the file head"
    return logs


@pytest.fixture
def urls(tmp_path: Path) -> tuple[str, str]:
    return f"sqlite:///{tmp_path / 'meta.db'}", (tmp_path / "blobs").as_uri()


@pytest.fixture
def opened() -> Iterator[list[Engine]]:
    engines: list[Engine] = []
    yield engines
    for engine in engines:
        engine.close()


def engine_on(urls: tuple[str, str], opened: list[Engine], **options: object) -> Engine:
    engine = open_engine(*urls, **options)
    opened.append(engine)
    return engine


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.binary(min_size=1, max_size=120)),
        st.tuples(st.just("crash"), st.binary(min_size=1, max_size=120)),
        st.tuples(st.just("seal"), st.none()),
        st.tuples(st.just("reopen"), st.none()),
        st.tuples(st.just("retry"), st.none()),
    ),
    min_size=1,
    max_size=30,
)
_names = (f"fh-{i}" for i in itertools.count())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS, rotate=st.sampled_from([1, 64, 1 << 20]))
def test_any_history_keeps_exactly_the_acknowledged_bytes_and_times(
        urls: tuple[str, str], opened: list[Engine], ops: list[tuple[str, bytes | None]], rotate: int) -> None:
    options = {"seal_bytes": 97, "segment_bytes": 150}
    store = engine_on(urls, opened, **options).store
    heads_of(store).rotate_bytes = rotate
    ref = TaskRef(PROJECT, new_job(store, PROJECT, next(_names)).id, "worker-0")
    log, arrivals, clock = b"", [], 1_700_000_000.0
    for op, data in ops:
        clock += 0.5
        if op == "append":
            assert data is not None
            assert store.append(ref, data, len(log), arrived_at=clock).full_size == len(log) + len(data)
            arrivals.append(Arrival(len(log), round(clock * 1_000_000)))
            log += data
        elif op == "crash":
            assert data is not None

            def crash() -> None:
                raise Crash

            heads_of(store).before_commit = crash
            with pytest.raises(Crash):
                store.append(ref, data, len(log), arrived_at=clock)
            store.close()  # the process is gone: reopen on what it left
            store = engine_on(urls, opened, **options).store
            heads_of(store).rotate_bytes = rotate
        elif op == "retry" and log:  # an append repeated after a lost answer: acknowledged, not stored twice
            assert store.append(ref, log[-1:], len(log) - 1).full_size == len(log)
        elif op == "seal":
            store.seal(ref)
        elif op == "reopen":
            store.close()
            store = engine_on(urls, opened, **options).store
            heads_of(store).rotate_bytes = rotate
        state = store.state(ref)
        assert state.end_offset == len(log)
        assert b"".join(store.read(state, 0, len(log))) == log
        assert store.arrivals(state, 0, len(log)) == arrivals
    state = store.state(ref)
    assert state.line_count == log.count(b"\n")
    store.seal(ref)
    state = store.state(ref)
    assert state.sealed_offset == len(log)
    assert b"".join(store.read(state, 0, len(log))) == log
    assert store.arrivals(state, 0, len(log)) == arrivals, "exact arrival times survive the seal"
    if log:
        store.append(ref, b"x", len(log))  # the next append clears what the seal left
    directory = heads_of(store).heads_dir / str(state.log_id)
    files = [p for p in directory.iterdir() if p.name.endswith(".head")] if directory.exists() else []
    assert len(files) <= 1, f"sealed head files are removed: {files}"


CHILD = textwrap.dedent("""
    import os, signal, sys
    sys.path[:0] = sys.argv[4:]
    from support.engine import open_engine
    from jobtail.core.types import TaskRef
    engine = open_engine(sys.argv[1], sys.argv[2], seal_bytes=1 << 40)
    ref = TaskRef("proj-file-head", sys.argv[3], "worker-0")
    logs = engine.database.logs
    offset = engine.store.state(ref).end_offset
    for i in range(5):
        if i == 4:  # the fifth append dies between its head write and its commit
            logs.before_commit = lambda: os.kill(os.getpid(), signal.SIGKILL)
        offset = engine.store.append(ref, b"line %d\\n" % i * 100, offset).full_size
        print(offset, flush=True)
""")


def test_a_sigkill_between_head_write_and_commit_loses_nothing_acknowledged(
        urls: tuple[str, str], opened: list[Engine], tmp_path: Path) -> None:
    engine = engine_on(urls, opened)
    job = new_job(engine.store, PROJECT, "sigkill")
    ref = TaskRef(PROJECT, job.id, "worker-0")
    engine.store.append(ref, b"before\n", 0)
    engine.store.seal(ref)
    tests = str(Path(__file__).resolve().parents[1])
    child = subprocess.run([sys.executable, "-c", CHILD, *urls, job.id, tests, *sys.path],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    acknowledged = [int(line) for line in child.stdout.split()]
    assert len(acknowledged) == 4
    expected = b"before\n" + b"".join(b"line %d\n" % i * 100 for i in range(4))
    assert acknowledged[-1] == len(expected)

    store = engine_on(urls, opened).store
    state = store.state(ref)
    assert state.end_offset == len(expected), "the killed append was never committed"
    heads = heads_of(store)
    directory = heads.heads_dir / str(state.log_id)
    on_disk = sum(p.stat().st_size for p in directory.iterdir() if p.name.endswith(".head"))
    assert on_disk > state.end_offset - state.sealed_offset, "the crash left unacknowledged bytes in the file"
    assert b"".join(store.read(state, 0, state.end_offset)) == expected, "they are never read"
    assert store.append(ref, b"after\n", len(expected)).full_size == len(expected) + 6
    on_disk = sum(p.stat().st_size for p in directory.iterdir() if p.name.endswith(".head"))
    assert on_disk == len(expected) + 6 - state.sealed_offset, "the next append wrote over them and cut the file"
    store.seal(ref)
    state = store.state(ref)
    assert b"".join(store.read(state, 0, state.end_offset)) == expected + b"after\n"


def test_appends_to_many_logs_at_once_each_keep_exactly_their_bytes(urls: tuple[str, str],
                                                                     opened: list[Engine]) -> None:
    """Writers of different logs share commits (`jobtail.meta.group_commit`); each log still gets
    exactly its bytes, line count and arrival times, through seals under way."""
    store = engine_on(urls, opened, seal_bytes=64 * 1024, segment_bytes=96 * 1024).store
    job = new_job(store, PROJECT, "many", node_count=4)
    refs = [TaskRef(PROJECT, job.id, f"worker-{i}") for i in range(4)]
    pieces = {ref: [b"%s line %d\n" % (ref.task_id.encode(), n) * (200 + n % 7) for n in range(40)] for ref in refs}

    def write(ref: TaskRef) -> None:
        offset = 0
        for n, piece in enumerate(pieces[ref]):
            offset = store.append(ref, piece, offset, arrived_at=1_700_000_000.0 + n).full_size

    threads = [threading.Thread(target=write, args=(ref,)) for ref in refs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for ref in refs:
        log = b"".join(pieces[ref])
        state = store.state(ref)
        assert (state.end_offset, state.line_count) == (len(log), log.count(b"\n"))
        assert b"".join(store.read(state, 0, len(log))) == log
        starts = [sum(map(len, pieces[ref][:n])) for n in range(40)]
        assert store.arrivals(state, 0, len(log)) == [Arrival(at, (1_700_000_000 + n) * 1_000_000)
                                                      for n, at in enumerate(starts)]


def test_a_log_deleted_between_head_write_and_commit_stores_nothing(urls: tuple[str, str],
                                                                     opened: list[Engine]) -> None:
    engine = engine_on(urls, opened, seal_bytes=1 << 40)
    store = engine.store
    job = new_job(store, PROJECT, "deleted")
    ref = TaskRef(PROJECT, job.id, "worker-0")
    store.append(ref, b"kept\n", 0)

    def delete_job() -> None:
        with engine.database.writer.begin() as conn:
            conn.exec_driver_sql("DELETE FROM jobs WHERE id = ?", (job.id,))

    heads_of(store).before_commit = delete_job
    with pytest.raises(JobNotFound):
        store.append(ref, b"lost\n", 5)
    heads_of(store).before_commit = None
    with engine.database.reader.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM head_chunks").scalar() == 0, "no head row for a gone log"


def test_a_seal_does_not_wait_for_the_appenders_lock(urls: tuple[str, str], opened: list[Engine]) -> None:
    store = engine_on(urls, opened, seal_bytes=1 << 40).store
    ref = TaskRef(PROJECT, new_job(store, PROJECT, "lock").id, "worker-0")
    store.append(ref, b"a" * 1000, 0)
    log_id = store.state(ref).log_id
    sealed = threading.Event()
    with heads_of(store)._append_lock(log_id):  # an appender stuck inside its append
        sealer = threading.Thread(target=lambda: (store.seal(ref), sealed.set()))
        sealer.start()
        assert sealed.wait(30), "the seal waited for the appenders' lock"
    sealer.join()
    state = store.state(ref)
    assert state.sealed_offset == 1000
    assert b"".join(store.read(state, 0, 1000)) == b"a" * 1000
    store.append(ref, b"b", 1000)  # the next append takes over the sealed file's removal
    files = sorted(p.name for p in (heads_of(store).heads_dir / str(log_id)).iterdir() if p.name.endswith(".head"))
    assert files == [f"{1000:020d}.head"]


def test_a_seal_while_an_append_holds_the_lock_links_the_file_the_next_append_leaves(
        urls: tuple[str, str], opened: list[Engine]) -> None:
    """A task writing fast holds the appenders' lock nearly all the time: the seal asks the next
    append to start a new head file and takes the old one in place, rather than copying it."""
    store = engine_on(urls, opened, seal_bytes=1 << 40).store
    ref = TaskRef(PROJECT, new_job(store, PROJECT, "busy").id, "worker-0")
    store.append(ref, b"a" * 1000, 0)
    heads = heads_of(store)
    log_id = store.state(ref).log_id
    head = heads.heads_dir / str(log_id) / f"{0:020d}.head"
    inode = head.stat().st_ino
    sealer = threading.Thread(target=store.seal, args=(ref,))
    with heads._append_lock(log_id):  # an append under way
        sealer.start()
        deadline = time.monotonic() + 30
        while log_id not in heads._rotate:
            assert time.monotonic() < deadline, "the seal never asked for a new head file"
            time.sleep(0.001)
    store.append(ref, b"b" * 10, 1000)  # the next append: into a new file
    sealer.join(30)
    state = store.state(ref)
    assert state.sealed_offset == 1010, "the seal goes on with the new file's bytes"
    first = backends_of(store).logs.segments(log_id)[0]
    assert (first.base_offset, first.length) == (0, 1000)
    blob = Path(urls[1].removeprefix("file://")) / first.blob_key
    assert blob.stat().st_ino == inode, "the head file became the segment: no copy"
    assert b"".join(store.read(state, 0, 1010)) == b"a" * 1000 + b"b" * 10


def test_appends_write_the_bytes_once_and_the_database_keeps_offsets(urls: tuple[str, str],
                                                                     opened: list[Engine]) -> None:
    engine = engine_on(urls, opened, seal_bytes=1 << 40)
    store = engine.store
    ref = TaskRef(PROJECT, new_job(store, PROJECT, "once").id, "worker-0")
    payload = os.urandom(256 * 1024)
    store.append(ref, payload, 0)
    state = store.state(ref)
    path = heads_of(store).heads_dir / str(state.log_id) / f"{0:020d}.head"
    assert path.read_bytes() == payload
    with engine.database.reader.connect() as conn:
        stored = conn.exec_driver_sql("SELECT length, length(data) FROM head_chunks WHERE log_id = ?",
                                      (state.log_id,)).all()
    assert stored == [(len(payload), 0)]


def test_database_head_by_url_and_reading_its_rows_after_switching(tmp_path: Path, opened: list[Engine]) -> None:
    database, blobs = f"sqlite:///{tmp_path / 'meta.db'}", (tmp_path / "blobs").as_uri()
    old = engine_on((database + "?head=database", blobs), opened, seal_bytes=1 << 40).store
    assert not isinstance(backends_of(old).logs, FileHeadLogRecords)
    ref = TaskRef(PROJECT, new_job(old, PROJECT, "switch").id, "worker-0")
    old.append(ref, b"in the database\n", 0)
    old.close()
    store = engine_on((database, blobs), opened, seal_bytes=1 << 40).store  # upgraded: the file head
    store.append(ref, b"in a file\n", 16)
    state = store.state(ref)
    assert b"".join(store.read(state, 0, state.end_offset)) == b"in the database\nin a file\n"
    store.seal(ref)
    assert b"".join(store.read(store.state(ref), 0, state.end_offset)) == b"in the database\nin a file\n"
    with pytest.raises(ValueError, match="unknown head"):
        open_engine(database + "?head=tape", blobs)


def test_a_seal_links_the_head_file_as_the_segment(urls: tuple[str, str], opened: list[Engine]) -> None:
    store = engine_on(urls, opened, seal_bytes=1 << 40).store
    ref = TaskRef(PROJECT, new_job(store, PROJECT, "link").id, "worker-0")
    store.append(ref, b"one\n", 0, arrived_at=1_700_000_000.0)
    store.append(ref, b"two\n", 4, arrived_at=1_700_000_001.0)
    log_id = store.state(ref).log_id
    head = heads_of(store).heads_dir / str(log_id) / f"{0:020d}.head"
    inode = head.stat().st_ino
    assert store.seal(ref) == 1
    state = store.state(ref)
    assert state.sealed_offset == 8
    blob = Path(urls[1].removeprefix("file://")) / state_key(store, state.log_id)
    assert blob.stat().st_ino == inode, "the head file became the segment: no copy"
    assert b"".join(store.read(state, 0, 8)) == b"one\ntwo\n"
    assert store.arrivals(state, 0, 8) == [Arrival(0, 1_700_000_000_000_000), Arrival(4, 1_700_000_001_000_000)]
    store.append(ref, b"three\n", 8)  # into a new head file
    assert not head.exists(), "the sealed head file's name is gone; the segment keeps the inode"
    assert blob.stat().st_nlink == 1
    assert b"".join(store.read(store.state(ref), 0, 14)) == b"one\ntwo\nthree\n"


def state_key(store: LogStore, log_id: int) -> str:
    (segment,) = backends_of(store).logs.segments(log_id)
    return segment.blob_key


def test_a_store_that_declines_to_adopt_is_asked_once_then_seals_copy(
    tmp_path: Path, opened: list[Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 (and memory://) cannot take a head file as it is: after the first refusal, seals copy at
    once, without readying the head file for adoption first."""
    store = engine_on((f"sqlite:///{tmp_path / 'meta.db'}", "memory://"), opened, seal_bytes=1 << 40).store
    heads = heads_of(store)
    readied: list[int] = []
    ready = heads.head_as_segment
    monkeypatch.setattr(heads, "head_as_segment", lambda *a: readied.append(1) or ready(*a))
    ref = TaskRef(PROJECT, new_job(store, PROJECT, "copied").id, "worker-0")
    log = b""
    for i in range(3):
        line = f"seal {i}\n".encode()
        store.append(ref, line, len(log))
        log += line
        assert store.seal(ref) == 1
    assert len(readied) == 1
    state = store.state(ref)
    assert state.sealed_offset == len(log) and b"".join(store.read(state, 0, len(log))) == log


def test_a_head_file_another_replica_sealed_and_removed_meanwhile_is_not_an_error(
    urls: tuple[str, str], opened: list[Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between readying the file and linking it, a peer (another `--workers` process) sealed the
    same bytes and the next append removed the file's name: this seal gives way, nothing fails."""
    ours = engine_on(urls, opened, seal_bytes=1 << 40).store
    peer = engine_on(urls, opened, seal_bytes=1 << 40).store
    ref = TaskRef(PROJECT, new_job(ours, PROJECT, "raced").id, "worker-0")
    ours.append(ref, b"first\n", 0)
    blobs = backends_of(ours).blobs
    adopt = blobs.adopt

    def peer_first(key: str, path: str) -> bool:
        assert peer.seal(ref) == 1
        peer.append(ref, b"second\n", 6)  # into a new file; the sealed one loses its name
        assert not Path(path).exists()
        return adopt(key, path)

    monkeypatch.setattr(blobs, "adopt", peer_first)
    assert ours.seal(ref) == 0, "the peer sealed it"
    state = ours.state(ref)
    assert (state.sealed_offset, state.end_offset) == (6, 13)
    assert b"".join(ours.read(state, 0, 13)) == b"first\nsecond\n"
    monkeypatch.setattr(blobs, "adopt", adopt)
    assert ours.seal(ref) == 1
