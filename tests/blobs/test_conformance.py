"""Conformance suite for `jobtail.core.blob_store.BlobStore`: every backend, same contract.

Runs once per blob backend through the `blob_url` fixture (a local directory, memory). The
tests marked "local only" check what `jobtail.blobs.local` promises on top of the protocol
(key validation, crash safety of temporary files) and skip on other backends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from jobtail.blobs.registry import open_blobs
from jobtail.core.blob_store import BlobInfo, BlobNotFound, BlobStore

SEGMENT_KEY = "jobs/job-1/worker-0/00000000000000000000-00000000000000001024.seg"


@pytest.fixture
def blobs(blob_url: str) -> Iterator[BlobStore]:
    store = open_blobs(blob_url)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def local_root(blob_url: str) -> Path:
    if not blob_url.startswith("file:"):
        pytest.skip("local directory backend only")
    return Path(unquote(urlparse(blob_url).path))


def every_file(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


class Boom(Exception):
    pass


# -- put and read -------------------------------------------------------------------------------


def test_put_returns_size_and_object_is_readable(blobs: BlobStore) -> None:
    data = bytes(range(256)) * 9
    assert blobs.put(SEGMENT_KEY, [data]) == len(data)
    assert blobs.read(SEGMENT_KEY, 0, len(data)) == data
    assert blobs.read(SEGMENT_KEY, 0, 10**9) == data


def test_put_of_a_generator_of_chunks(blobs: BlobStore) -> None:
    pieces = [b"line %d\n" % i * (i % 5) for i in range(2000)]  # includes empty chunks
    expected = b"".join(pieces)

    def chunks() -> Iterator[bytes]:
        yield from pieces

    assert blobs.put("a/b/c", chunks()) == len(expected)
    assert blobs.read("a/b/c", 0, len(expected)) == expected


def test_put_of_no_bytes_stores_an_empty_object(blobs: BlobStore) -> None:
    assert blobs.put("empty", iter(())) == 0
    assert blobs.read("empty", 0, 100) == b""
    assert [(b.key, b.size) for b in blobs.list("empty")] == [("empty", 0)]


def test_put_of_a_large_object(blobs: BlobStore) -> None:
    chunk = os.urandom(64 * 1024)
    size = blobs.put("big", (chunk for _ in range(40)))
    assert size == 40 * len(chunk)
    assert blobs.read("big", size - 10, size) == chunk[-10:]
    assert blobs.read("big", 64 * 1024 * 7 + 5, 64 * 1024 * 7 + 105) == chunk[5:105]


def test_adopt_links_a_local_file_or_declines(blobs: BlobStore, blob_url: str, tmp_path: Path) -> None:
    source = tmp_path / "head-file"
    source.write_bytes(b"sealed bytes")
    adopted = blobs.adopt("jobs/j/t/seg", str(source))
    assert adopted == blob_url.startswith("file:"), "a local directory links; others decline"
    if adopted:
        assert blobs.read("jobs/j/t/seg", 0, 100) == b"sealed bytes"
        assert blobs.adopt("jobs/j/t/seg", str(source)), "adopting an existing key keeps it"
        source.unlink()
        assert blobs.read("jobs/j/t/seg", 0, 100) == b"sealed bytes", "the object outlives the file's name"
    else:
        with pytest.raises(BlobNotFound):
            blobs.read("jobs/j/t/seg", 0, 100)


def test_read_ranges(blobs: BlobStore) -> None:
    data = b"0123456789abcdef"
    blobs.put("k", [data[:7], data[7:]])
    assert blobs.read("k", 0, 16) == data
    assert blobs.read("k", 2, 5) == b"234"
    assert blobs.read("k", 15, 16) == b"f"
    assert blobs.read("k", 10, 100) == b"abcdef", "a read past the end is short"
    assert blobs.read("k", 16, 20) == b""
    assert blobs.read("k", 100, 200) == b""
    assert blobs.read("k", 5, 5) == b"", "an empty range"
    assert blobs.read("k", 0, 0) == b""
    assert blobs.read("k", 9, 3) == b"", "end before start is an empty range"


def test_read_of_a_missing_key_raises_blob_not_found(blobs: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        blobs.read("jobs/nope/worker-0/0.seg", 0, 10)
    blobs.put("jobs/some/key", [b"x"])
    with pytest.raises(BlobNotFound):
        blobs.read("jobs/some/ke", 0, 10)  # a prefix of a key is not an object
    with pytest.raises(BlobNotFound):
        blobs.read("jobs/some/key2", 0, 10)


def test_read_of_a_missing_key_below_or_above_an_object_raises_blob_not_found(blobs: BlobStore) -> None:
    """Keys are flat strings: `jobs/some` and `jobs/some/key/x` are just missing keys."""
    blobs.put("jobs/some/key", [b"x"])
    with pytest.raises(BlobNotFound):
        blobs.read("jobs/some", 0, 10)  # names a "directory" of other keys
    with pytest.raises(BlobNotFound):
        blobs.read("jobs/some/key/x", 0, 10)  # "beneath" an object
    assert blobs.read("jobs/some/key", 0, 10) == b"x"


def test_delete_of_a_missing_key_below_or_above_an_object_is_not_an_error(blobs: BlobStore) -> None:
    blobs.put("jobs/some/key", [b"x"])
    blobs.delete("jobs/some")
    blobs.delete("jobs/some/key/x")
    assert blobs.read("jobs/some/key", 0, 10) == b"x"


def test_overwrite_with_identical_bytes(blobs: BlobStore) -> None:
    assert blobs.put(SEGMENT_KEY, [b"same ", b"bytes"]) == 10
    assert blobs.put(SEGMENT_KEY, (c for c in [b"same", b" bytes"])) == 10
    assert blobs.read(SEGMENT_KEY, 0, 100) == b"same bytes"
    assert [(b.key, b.size) for b in blobs.list("jobs/")] == [(SEGMENT_KEY, 10)]


def test_concurrent_puts_of_identical_bytes(blobs: BlobStore) -> None:
    data = os.urandom(256 * 1024)
    barrier = threading.Barrier(8)

    def put(_: int) -> int:
        barrier.wait()
        return blobs.put(SEGMENT_KEY, (data[i : i + 4096] for i in range(0, len(data), 4096)))

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(put, range(8))) == [len(data)] * 8
    assert blobs.read(SEGMENT_KEY, 0, len(data)) == data
    assert [(b.key, b.size) for b in blobs.list("")] == [(SEGMENT_KEY, len(data))]


def test_interrupted_put_stores_nothing(blobs: BlobStore) -> None:
    def failing() -> Iterator[bytes]:
        yield b"a" * 1000
        yield b"b" * 1000
        raise Boom("writer died")

    with pytest.raises(Boom):
        blobs.put("jobs/j/w/new", failing())
    with pytest.raises(BlobNotFound):
        blobs.read("jobs/j/w/new", 0, 10)
    assert list(blobs.list("")) == []

    # an interrupted overwrite leaves the previous object whole
    blobs.put("jobs/j/w/old", [b"previous"])
    with pytest.raises(Boom):
        blobs.put("jobs/j/w/old", failing())
    assert blobs.read("jobs/j/w/old", 0, 100) == b"previous"
    assert [(b.key, b.size) for b in blobs.list("")] == [("jobs/j/w/old", 8)]


# -- delete -------------------------------------------------------------------------------------


def test_delete_is_idempotent(blobs: BlobStore) -> None:
    blobs.put("jobs/a/1", [b"one"])
    blobs.put("jobs/a/2", [b"two"])
    blobs.delete("jobs/a/1")
    with pytest.raises(BlobNotFound):
        blobs.read("jobs/a/1", 0, 3)
    blobs.delete("jobs/a/1")  # again: not an error
    blobs.delete("jobs/never/existed")
    assert blobs.read("jobs/a/2", 0, 3) == b"two"
    assert [b.key for b in blobs.list("")] == ["jobs/a/2"]
    # a deleted key can be written again
    assert blobs.put("jobs/a/1", [b"uno!"]) == 4
    assert blobs.read("jobs/a/1", 0, 10) == b"uno!"


# -- list ---------------------------------------------------------------------------------------


def test_list_by_prefix_in_key_order_with_sizes(blobs: BlobStore) -> None:
    contents = {
        "jobs/b/worker-1/00000000000000000010.seg": b"x" * 3,
        "jobs/b/worker-0/00000000000000000010.seg": b"x" * 5,
        "jobs/b/worker-0/00000000000000000000.seg": b"x" * 10,
        "jobs/a/worker-0/00000000000000000000.seg": b"",
        "jobs/ab/worker-0/00000000000000000000.seg": b"x" * 7,
        "jobs/a-b/x": b"x" * 2,
        "jobs/a_b/x": b"x",
        "other/thing": b"x" * 4,
        "top": b"x" * 6,
    }
    before = time.time()
    for key, data in contents.items():
        blobs.put(key, [data])

    def listed(prefix: str) -> list[tuple[str, int]]:
        infos = list(blobs.list(prefix))
        assert all(isinstance(i, BlobInfo) for i in infos)
        return [(i.key, i.size) for i in infos]

    everything = sorted((k, len(v)) for k, v in contents.items())
    assert listed("") == everything
    assert listed("jobs/") == [kv for kv in everything if kv[0].startswith("jobs/")]
    assert listed("jobs/a") == [
        ("jobs/a-b/x", 2),
        ("jobs/a/worker-0/00000000000000000000.seg", 0),
        ("jobs/a_b/x", 1),
        ("jobs/ab/worker-0/00000000000000000000.seg", 7),
    ], "key order is string order, not directory order"
    assert listed("jobs/a/") == [("jobs/a/worker-0/00000000000000000000.seg", 0)]
    assert listed("jobs/b/worker-0/") == [
        ("jobs/b/worker-0/00000000000000000000.seg", 10),
        ("jobs/b/worker-0/00000000000000000010.seg", 5),
    ]
    assert listed("jobs/b/worker-0/00000000000000000010.seg") == [("jobs/b/worker-0/00000000000000000010.seg", 5)]
    assert listed("jobs/c") == []
    assert listed("top") == [("top", 6)]
    for info in blobs.list(""):
        assert before - 5 <= info.modified <= time.time() + 5, "modified is epoch seconds"


def test_list_of_an_empty_store(blobs: BlobStore) -> None:
    assert list(blobs.list("")) == []
    assert list(blobs.list("jobs/")) == []


def test_close_is_idempotent(blob_url: str) -> None:
    store = open_blobs(blob_url)
    store.put("k", [b"v"])
    store.close()
    store.close()


# -- local directory backend ---------------------------------------------------------------------


def test_local_objects_survive_reopen(blob_url: str, local_root: Path) -> None:
    store = open_blobs(blob_url)
    store.put(SEGMENT_KEY, [b"durable"])
    store.close()
    store = open_blobs(blob_url)
    try:
        assert store.read(SEGMENT_KEY, 0, 100) == b"durable"
        assert [(b.key, b.size) for b in store.list("")] == [(SEGMENT_KEY, 7)]
    finally:
        store.close()


@pytest.mark.parametrize(
    "key",
    [
        "",
        "..",
        ".",
        "../escaped",
        "../../escaped",
        "jobs/../../escaped",
        "jobs/../escaped",
        "jobs/./x",
        "jobs//x",
        "jobs/x/",
        "/escaped",
        "//escaped",
        "<outside>/escaped",
        "jobs/..",
    ],
)
def test_local_invalid_keys_raise_value_error(blobs: BlobStore, local_root: Path, key: str) -> None:
    outside = local_root.parent
    key = key.replace("<outside>", str(outside))  # an absolute path to a real file outside the root
    sentinel = outside / "escaped"
    sentinel.write_bytes(b"must survive")
    blobs.put("jobs/x/ok", [b"ok"])
    files_outside = {p for p in outside.rglob("*") if not p.is_relative_to(local_root)}
    files_inside = every_file(local_root)

    with pytest.raises(ValueError):
        blobs.put(key, [b"evil"])
    with pytest.raises(ValueError):
        blobs.read(key, 0, 100)
    with pytest.raises(ValueError):
        blobs.delete(key)

    assert sentinel.read_bytes() == b"must survive"
    assert {p for p in outside.rglob("*") if not p.is_relative_to(local_root)} == files_outside
    assert every_file(local_root) == files_inside
    assert blobs.read("jobs/x/ok", 0, 10) == b"ok"


def test_local_interrupted_put_leaves_no_object_and_no_temp_file(blobs: BlobStore, local_root: Path) -> None:
    def failing() -> Iterator[bytes]:
        yield b"partial " * 1000
        raise Boom("writer died")

    with pytest.raises(Boom):
        blobs.put(SEGMENT_KEY, failing())
    assert every_file(local_root) == set()
    with pytest.raises(BlobNotFound):
        blobs.read(SEGMENT_KEY, 0, 10)

    blobs.put(SEGMENT_KEY, [b"whole"])
    with pytest.raises(Boom):
        blobs.put(SEGMENT_KEY, failing())
    assert every_file(local_root) == {local_root / SEGMENT_KEY}
    assert blobs.read(SEGMENT_KEY, 0, 100) == b"whole"


def _leftover(path: Path, age_seconds: float = 0.0) -> Path:
    """A temporary file as a writer that died leaves it: partly written, nobody holding it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half written")
    if age_seconds:
        then = time.time() - age_seconds
        os.utime(path, (then, then))
    return path


def _killed_put(local_root: Path, key: str) -> Path:
    """The temporary file of a put whose process was killed (SIGKILL) in the middle of it."""
    script = (
        "import sys, time; from pathlib import Path; from jobtail.blobs.local import LocalBlobStore\n"
        "def chunks():\n    yield b'x' * 65536\n    print('writing', flush=True)\n    time.sleep(60)\n"
        f"LocalBlobStore(Path({str(local_root)!r})).put({key!r}, chunks())\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
    finally:
        writer.kill()
        writer.communicate()
    (temporary,) = (local_root / key).parent.glob("*.tmp")
    return temporary


def test_local_put_removes_the_leftovers_of_dead_writers_in_its_directory(blobs: BlobStore, local_root: Path) -> None:
    """The next seal of a log writes into its directory: what an interrupted seal left there goes,
    whatever its age; other directories wait for the periodic sweep."""
    killed = _killed_put(local_root, SEGMENT_KEY)
    directory = killed.parent
    old = _leftover(directory / "00000000000000001024-00000000000000002048.seg.0123456789abcdef.tmp", 86400)
    elsewhere = _leftover(local_root / "jobs/job-2/worker-0/00000000000000000000-00000000000000000010.seg.ab.tmp")
    blobs.put("jobs/job-1/worker-0/00000000000000001024-00000000000000004096.seg", [b"next seal"])
    assert not killed.exists() and not old.exists()
    assert elsewhere.exists()
    assert every_file(local_root) == {elsewhere, local_root / "jobs/job-1/worker-0/"
                                      "00000000000000001024-00000000000000004096.seg"}


def test_local_temp_file_of_a_put_in_progress_is_never_swept(blobs: BlobStore, local_root: Path) -> None:
    release, writing = threading.Event(), threading.Event()

    def slow() -> Iterator[bytes]:
        yield b"first "
        writing.set()
        release.wait(30)
        yield b"second"

    with ThreadPoolExecutor(1) as pool:
        slow_put = pool.submit(blobs.put, SEGMENT_KEY, slow())
        assert writing.wait(30)
        (temporary,) = (local_root / SEGMENT_KEY).parent.glob("*.tmp")
        then = time.time() - 86400
        os.utime(temporary, (then, then))  # old, yet its writer lives
        blobs.put("jobs/job-1/worker-0/00000000000000001024-00000000000000002048.seg", [b"beside it"])
        assert blobs.sweep_partial("", time.time() + 3600) == []
        assert temporary.exists()
        release.set()
        assert slow_put.result(timeout=30) == 12
    assert blobs.read(SEGMENT_KEY, 0, 100) == b"first second"


def test_local_sweep_removes_abandoned_temp_files_older_than_the_cutoff(blob_url: str, local_root: Path) -> None:
    store = open_blobs(blob_url)
    try:
        store.put(SEGMENT_KEY, [b"object"])
        directory = (local_root / SEGMENT_KEY).parent
        stale = _leftover(directory / "00000000000000001024-00000000000000002048.seg.0123456789abcdef.tmp", 7200)
        fresh = _leftover(directory / "00000000000000002048-00000000000000004096.seg.fedcba9876543210.tmp")
        stale_top = _leftover(local_root / "orphan.deadbeef.tmp", 7200)
        other = _leftover(local_root / "jobs/job-2/worker-0/0.seg.cafe.tmp", 7200)
        assert [(b.key, b.size) for b in store.list("")] == [(SEGMENT_KEY, 6)], "temp files are not objects"
        assert store.sweep_partial("jobs/job-1/", time.time() - 3600) == [stale.relative_to(local_root).as_posix()]
        assert not stale.exists()
        assert fresh.exists() and stale_top.exists() and other.exists(), "younger, or outside the prefix"
        assert sorted(store.sweep_partial("", time.time() - 3600)) == ["jobs/job-2/worker-0/0.seg.cafe.tmp",
                                                                       "orphan.deadbeef.tmp"]
        assert fresh.exists()
        assert store.read(SEGMENT_KEY, 0, 100) == b"object"
    finally:
        store.close()


def test_sweep_partial_of_a_store_without_leftovers_removes_nothing(blobs: BlobStore) -> None:
    blobs.put(SEGMENT_KEY, [b"whole"])
    assert blobs.sweep_partial("", time.time() + 3600) == []
    assert blobs.sweep_partial("jobs/", time.time() + 3600) == []
    assert blobs.read(SEGMENT_KEY, 0, 100) == b"whole"
