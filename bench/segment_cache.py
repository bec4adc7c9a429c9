"""Benchmark the segment read cache: a finished job's preview from SeaweedFS against file://.

    .venv/bin/python bench/segment_cache.py [--rounds 3] [--repeats 15]

One task log of ~8 MiB of training-log text, sealed into one segment, is stored three ways: on
file:// (the baseline), on SeaweedFS without the cache (`segment_cache_bytes=0`) and on SeaweedFS
with it. The in-memory preview cache is off (`preview_cache_bytes=0`), so every preview reads the
5 MiB tail from the segment store and decodes it, as a process that has not served it yet (another
worker, after a restart or an eviction) does. Each round, interleaving the three stores, measures:
the first preview with the cache (its directory emptied just before), then `repeats` previews of
each store, and the same for the bare 5 MiB tail read (`LogStore.read`). It prints medians over all
rounds and the ratios to file://, and writes JSON to bench/results/. glibc's malloc is tuned as
`jobtail serve` tunes it (`tune_malloc`).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the SeaweedFS fixture
from support.seaweedfs import start_seaweedfs

from _harness import say
from _loggen import LogMaker
from jobtail.core.store import LogStore
from jobtail.core.types import JobSpec, LogState, TaskRef
from jobtail.http.server import tune_malloc
from jobtail.settings import Settings
from jobtail.wiring import open_jobs

MiB = 1024 * 1024
LOG_BYTES = 8 * MiB - 4096  # below seal_bytes: one segment, sealed by hand
TAIL = 5 * MiB


def preview(store: LogStore, state: LogState) -> object:
    return store.preview(state)


def tail(store: LogStore, state: LogState) -> object:
    return b"".join(store.read(state, state.end_offset - TAIL, state.end_offset))


def timed(work: Callable[[LogStore, LogState], object], store: LogStore, state: LogState) -> float:
    started = time.perf_counter()
    work(store, state)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    tune_malloc()  # as `jobtail serve` does: preview-sized buffers reuse their pages
    root = Path(tempfile.mkdtemp(prefix="jobtail-bench-cache-"))
    weed = start_seaweedfs()
    try:
        import os

        os.environ.update(weed.env)
        os.environ.pop("AWS_PROFILE", None)
        body = b"".join(LogMaker(seed=12).chunks(LOG_BYTES))[:LOG_BYTES]
        stores = {}
        opened = []
        for name, blob_url, cache_bytes in (
            ("file", (root / "file-blobs").as_uri(), 0),
            ("s3", weed.blob_url("nocache"), 0),
            ("s3+cache", weed.blob_url("cache"), 1024 * MiB),
        ):
            settings = Settings(data_dir=root / name, blob_url=blob_url, preview_cache_bytes=0,
                                segment_cache_bytes=cache_bytes, executor="none")
            context = open_jobs(settings)
            jobs, store = context.__enter__()
            opened.append(context)
            job = jobs.create("bench", JobSpec("cache", node_count=1, document={}), executor="none")
            ref = TaskRef("bench", job.id, "worker-0")
            store.append(ref, body)
            store.seal(ref)
            state = store.state(ref)
            assert state.sealed_offset == len(body), "the log must be all in segments"
            stores[name] = (store, state, settings.data_dir / "segment-cache")
        results: dict[str, list[float]] = {}

        def add(label: str, ms: float) -> None:
            results.setdefault(label, []).append(ms)

        expected = stores["file"][0].preview(stores["file"][1])
        for round_ in range(args.rounds):
            say(f"round {round_ + 1}/{args.rounds}")
            cached, cached_state, cache_dir = stores["s3+cache"]
            for kind, work in (("preview", preview), ("read 5 MiB", tail)):
                shutil.rmtree(cache_dir)
                cache_dir.mkdir()
                add(f"{kind} s3+cache first", timed(work, cached, cached_state))
            for _ in range(args.repeats):
                for name, (store, state, _dir) in stores.items():
                    add(f"preview {name}", timed(preview, store, state))
                    add(f"read 5 MiB {name}", timed(tail, store, state))
        for name, (store, state, _dir) in stores.items():
            assert store.preview(state) == expected, f"{name}: a different preview"
        for context in opened:
            context.__exit__(None, None, None)
        medians = {label: statistics.median(values) for label, values in results.items()}
        print(f"\n{'measurement':34} {'median ms':>10} {'× file://':>10}")
        for label, value in medians.items():
            kind = "preview" if label.startswith("preview") else "read 5 MiB"
            print(f"{label:34} {value:10.2f} {value / medians[f'{kind} file']:10.2f}")
        out = Path(__file__).parent / "results"
        out.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        (out / f"segment_cache-{stamp}.json").write_text(json.dumps(
            {"machine": platform.platform(), "rounds": args.rounds, "repeats": args.repeats,
             "medians_ms": medians, "samples_ms": results}, indent=2))
    finally:
        weed.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
