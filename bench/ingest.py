"""Benchmark sustained ingest: append MB/s into one task log and into 64 at once, next to the disk.

    .venv/bin/python bench/ingest.py                 # 256 MiB per measurement, 3 runs (~4-6 min)
    .venv/bin/python bench/ingest.py --quick         # 64 MiB, 1 run (~1 min)
    .venv/bin/python bench/ingest.py --backends sqlite --mib 128 --runs 5 [--keep]

Every measurement appends 1 MiB batches of realistic training-log text with acknowledged appends
durable, and is reported as a median MB/s (MB = 10^6 B) and as a ratio to the raw disk measured in
the same run with the same fsync policy (write 1 MiB, fsync, repeat; 64 files from 64 threads for
the 64-task case). For each metadata backend (a SQLite file in the data directory; a throwaway
PostgreSQL server with its default, durable settings, started as the tests start theirs):

- store: `LogStore.append` in-process, the store sealing full heads in the background as in the server;
- store, no seal: the same with sealing off (seal_bytes larger than the data), to show what the
  seal's second write (blob + fsync, then deleting the head rows) costs;
- http: a real `jobtail serve` (one process), signed AK/SK `POST …/logs?offset=N` requests of 1 MiB
  from an ingest credential, one client per task, as `jobtail ship` sends them.

Results: a table on stdout and JSON in bench/results/ingest-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from _harness import Jobtail, free_port, say  # noqa: E402
from _loggen import LogText, banner, fit  # noqa: E402
from jobtail.auth import manage  # noqa: E402
from jobtail.auth.secrets import load_master_key  # noqa: E402
from jobtail.client import Client, Credentials  # noqa: E402
from jobtail.core.jobs import JobService  # noqa: E402
from jobtail.core.types import JobSpec, TaskRef  # noqa: E402
from jobtail.settings import Settings  # noqa: E402
from jobtail.wiring import open_identity, open_jobs  # noqa: E402

MiB = 1024 * 1024
TASKS = 64
PROJECT = "bench-ingest"


def batches(total_mib: int, text: bytes) -> list[bytes]:
    """`total_mib` distinct 1 MiB batches of log text (a banner line, then a slice of `text`)."""
    out = []
    for i in range(total_mib):
        head = banner(i)
        at = (i * 7919 * 4096) % (len(text) - MiB)
        out.append(head + text[at : at + MiB - len(head)])
    return out


def mbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6


# -- the disk -------------------------------------------------------------------------------------


def disk(directory: Path, data: list[bytes], streams: int) -> float:
    """Write `data` as 1 MiB appends with an fsync after each, over `streams` files at once."""
    files = [os.open(directory / f"disk-{i}.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
             for i in range(streams)]

    def run(i: int) -> None:
        for batch in data[i::streams]:
            os.write(files[i], batch)
            os.fsync(files[i])

    start = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(run, range(streams)))
    seconds = time.perf_counter() - start
    for fd in files:
        os.close(fd)
    for i in range(streams):
        (directory / f"disk-{i}.bin").unlink()
    return mbps(sum(map(len, data)), seconds)


# -- the store in-process -------------------------------------------------------------------------


def store_run(settings: Settings, data: list[bytes], streams: int, seal: bool) -> float:
    with open_jobs(settings) as (jobs, store):
        if not seal:
            store.seal_bytes = 1 << 62
        job = jobs.create(PROJECT, JobSpec(f"store-{time.monotonic_ns()}", node_count=TASKS), "none")

        def run(i: int) -> None:  # a head that fills is sealed by the store, in the background
            ref, offset = TaskRef(PROJECT, job.id, f"worker-{i}"), 0
            for batch in data[i::streams]:
                offset = store.append(ref, batch, offset).full_size

        start = time.perf_counter()
        with ThreadPoolExecutor(streams) as pool:
            list(pool.map(run, range(streams)))
        seconds = time.perf_counter() - start
        jobs.delete(PROJECT, job.id)
    return mbps(sum(map(len, data)), seconds)


# -- over HTTP ------------------------------------------------------------------------------------


class Served(Jobtail):
    """`jobtail serve` on the benchmark's settings (no executor, its metadata database)."""

    def __init__(self, settings: Settings, port: int, log_path: Path) -> None:
        super().__init__(settings.data_dir, port, 1, log_path)
        self.settings = settings

    def command(self) -> list[str]:
        return [*super().command(), "--executor", "none", "--database-url", self.settings.database_url,
                "--blob-url", self.settings.blob_url]


def http_run(url: str, credentials: Credentials, jobs: JobService, data: list[bytes], streams: int) -> float:
    job = jobs.create(PROJECT, JobSpec(f"http-{time.monotonic_ns()}", node_count=TASKS), "none")
    clients = [Client(url, credentials=credentials) for _ in range(streams)]

    def run(i: int) -> None:
        path, offset = f"/v2/{PROJECT}/training-jobs/{job.id}/tasks/worker-{i}/logs", 0
        for batch in data[i::streams]:
            r = clients[i].request("POST", path, params={"offset": offset}, content=batch,
                                   headers={"Content-Type": "application/octet-stream"})
            if r.status_code != 200:
                raise RuntimeError(f"append failed: {r.status_code} {r.text}")
            offset = r.json()["full_size"]

    start = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(run, range(streams)))
    seconds = time.perf_counter() - start
    for client in clients:
        client.close()
    jobs.delete(PROJECT, job.id)
    return mbps(sum(map(len, data)), seconds)


def ingest_credentials(settings: Settings) -> Credentials:
    with open_identity(settings) as identity:
        if PROJECT not in {p.id for p in identity.projects()}:
            manage.create_project(identity, PROJECT, PROJECT)
        issued = manage.create_credential(identity, load_master_key(Path(settings.master_key_file)),
                                          project_id=PROJECT, role="ingest")
    return Credentials(issued.credential.access_key, issued.secret_key, PROJECT)


# -- the run --------------------------------------------------------------------------------------


def median_of(runs: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    values = [measure() for _ in range(runs)]
    return statistics.median(values), values


def bench_backend(name: str, settings: Settings, data: list[bytes], runs: int, results: dict[str, object],
                  disks: dict[int, float]) -> None:
    for streams in (1, TASKS):
        for label, seal in (("store", True), ("store, no seal", False)):
            med, values = median_of(runs, lambda streams=streams, seal=seal: store_run(settings, data, streams, seal))
            results[f"{name} {label} x{streams}"] = {"mbps": med, "runs": values, "ratio": med / disks[streams]}
            say(f"{name:10s} {label:15s} {streams:2d} task(s): {med:7.1f} MB/s ({med / disks[streams]:.2f} of the disk)")
    credentials = ingest_credentials(settings)
    port = free_port()
    with open_jobs(settings) as (jobs, _), Served(settings, port, settings.data_dir / f"serve-{name}.log") as server:
        for streams in (1, TASKS):
            med, values = median_of(runs, lambda streams=streams: http_run(server.base, credentials, jobs, data, streams))
            results[f"{name} http x{streams}"] = {"mbps": med, "runs": values, "ratio": med / disks[streams]}
            say(f"{name:10s} {'http':15s} {streams:2d} task(s): {med:7.1f} MB/s ({med / disks[streams]:.2f} of the disk)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="MiB appended per measurement (a multiple of 64)")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (the median is reported)")
    parser.add_argument("--quick", action="store_true", help="64 MiB, one run")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    mib, runs = (64, 1) if args.quick else (max(TASKS, args.mib // TASKS * TASKS), args.runs)
    root = Path(tempfile.mkdtemp(prefix="jobtail-ingest-", dir=os.environ.get("BENCH_DIR", "/tmp")))
    say(f"working in {root}; {mib} MiB per measurement, {runs} run(s)")
    text = fit(LogText(11).generate(16 * MiB), 16 * MiB)
    data = batches(mib, text)
    results: dict[str, object] = {"mib": mib, "runs": runs, "batch_bytes": MiB}
    disks = {}
    for streams in (1, TASKS):
        med, values = median_of(runs, lambda streams=streams: disk(root, data, streams))
        disks[streams] = med
        results[f"disk x{streams}"] = {"mbps": med, "runs": values}
        say(f"{'disk':10s} {'1 MiB + fsync':15s} {streams:2d} file(s):  {med:7.1f} MB/s")
    postgres = None
    try:
        for name in args.backends.split(","):
            data_dir = root / name
            if name == "sqlite":
                settings = Settings(data_dir=data_dir, executor="none")
            else:
                from support.postgres import start_postgres

                postgres = start_postgres(durable=True)
                settings = Settings(data_dir=data_dir, executor="none", database_url=postgres.url)
            bench_backend(name, settings, data, runs, results, disks)
    finally:
        if postgres is not None:
            postgres.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    out = HERE / "results" / f"ingest-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print()
    print(f"| measurement ({mib} MiB of 1 MiB appends, median of {runs}) | MB/s | × raw disk |")
    print("|---|---|---|")
    for key, value in results.items():
        if isinstance(value, dict):
            ratio = f"{value['ratio']:.2f}" if "ratio" in value else "1.00"
            print(f"| {key} | {value['mbps']:.0f} | {ratio} |")
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    main()
