"""Benchmark sustained ingest: append MB/s into one task log and into 4 at once, next to the disk.

    .venv/bin/python bench/ingest.py                 # 128 MiB per measurement, 3 runs (~3-5 min)
    .venv/bin/python bench/ingest.py --quick         # 32 MiB, 1 run (~1 min)
    .venv/bin/python bench/ingest.py --backends sqlite --mib 128 --runs 5 [--writers 1,4,64] [--keep]

Every measurement appends 1 MiB batches of realistic training-log text with acknowledged appends
durable, and is reported as a median MB/s (MB = 10^6 B) and as a ratio to the raw disk with the
same fsync policy (write 1 MiB, fsync, repeat; one file per writer, one thread per file). The disk
is measured right before *each* jobtail run, on the same data, so both see the same page cache,
writeback and neighbours (a disk figure taken once at the start was 477 MB/s where interleaved
runs gave 835: the ratios flattered jobtail); the ratio is the median of the per-run ratios.
Before each run, disk or jobtail, as much page cache as the run writes is written and dropped
(`recycle_page_cache`), so that neither lands in memory the VM must fault in first. For
each metadata backend (a SQLite file in the data directory; a throwaway PostgreSQL server with
its default, durable settings, started as the tests start theirs):

- store: `LogStore.append` in-process, the store sealing full heads in the background as in the server;
- store, no seal (`--no-seal`): the same with sealing off (seal_bytes larger than the data), to
  show what the seal's second write (blob + fsync, then deleting the head rows) costs;
- http: a real `jobtail serve` (one process), signed AK/SK `POST …/logs?offset=N` requests of 1 MiB
  from an ingest credential, one client per task, as `jobtail ship` sends them (it batches up to
  4 MiB; 1 MiB appends are the figure the README tracks).

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
TASKS = 64  # tasks in the benchmark job; each writer appends to its own
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
        # The per-credential rate limit (200 requests/s by default) would cap 1 MiB appends at
        # 200 MiB/s once its one-second burst is spent: this measures the server, not that policy.
        return [*super().command(), "--executor", "none", "--database-url", self.settings.database_url,
                "--blob-url", self.settings.blob_url, "--rate-limit-per-second", "0"]


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


def recycle_page_cache(directory: Path, data: list[bytes]) -> None:
    """Write `data` into the page cache and delete it unwritten, so that the next run's writes
    land in memory just freed. In this VM, memory the guest has not touched lately costs the
    host a fault per page: 1 GiB went into the page cache at ~400 MiB/s into such memory and at
    1,060-1,430 MiB/s into memory just freed, so whichever run got the fresh pages lost."""
    path = directory / "recycle.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for batch in data:
            os.write(fd, batch)
    finally:
        os.close(fd)
        path.unlink()


def paired(runs: int, root: Path, data: list[bytes], streams: int, measure: Callable[[], float]) -> dict[str, object]:
    """`runs` × (the disk, then jobtail), both with `streams` writers, each into recycled page
    cache (`recycle_page_cache`): medians and the median ratio."""
    disks, values = [], []
    for _ in range(runs):
        recycle_page_cache(root, data)
        disks.append(disk(root, data, streams))
        recycle_page_cache(root, data)
        values.append(measure())
    return {"mbps": statistics.median(values), "runs": values, "disk_mbps": statistics.median(disks),
            "disk_runs": disks, "ratio": statistics.median(v / d for v, d in zip(values, disks, strict=True))}


def report(results: dict[str, object], key: str, value: dict[str, object]) -> None:
    results[key] = value
    say(f"{key:28s}: {value['mbps']:7.1f} MB/s, disk {value['disk_mbps']:7.1f} MB/s "
        f"({value['ratio']:.2f} of the disk)")


def bench_backend(name: str, settings: Settings, root: Path, data: list[bytes], args: argparse.Namespace,
                  results: dict[str, object]) -> None:
    labels = (("store", True), ("store, no seal", False)) if args.no_seal else (("store", True),)
    for streams in args.writers:
        for label, seal in labels:
            report(results, f"{name} {label} x{streams}", paired(
                args.runs, root, data, streams, lambda streams=streams, seal=seal: store_run(settings, data, streams, seal)))
    credentials = ingest_credentials(settings)
    port = free_port()
    with open_jobs(settings) as (jobs, _), Served(settings, port, settings.data_dir / f"serve-{name}.log") as server:
        for streams in args.writers:
            report(results, f"{name} http x{streams}", paired(
                args.runs, root, data, streams, lambda streams=streams: http_run(server.base, credentials, jobs, data, streams)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=128, help="MiB appended per measurement")
    parser.add_argument("--runs", type=int, default=3, help="paired runs per measurement (medians are reported)")
    parser.add_argument("--quick", action="store_true", help="32 MiB, one run")
    parser.add_argument("--writers", default="1,4", help="comma-separated writer counts (at most 64)")
    parser.add_argument("--no-seal", action="store_true", help="also measure the store with sealing off")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    args.writers = [min(TASKS, int(w)) for w in args.writers.split(",")]
    if args.quick:
        args.mib, args.runs = 32, 1
    mib = max(TASKS, args.mib) if max(args.writers) == TASKS else args.mib
    root = Path(tempfile.mkdtemp(prefix="jobtail-ingest-", dir=os.environ.get("BENCH_DIR", "/tmp")))
    say(f"working in {root}; {mib} MiB per measurement, {args.runs} paired run(s)")
    text = fit(LogText(11).generate(16 * MiB), 16 * MiB)
    data = batches(mib, text)
    results: dict[str, object] = {"mib": mib, "runs": args.runs, "batch_bytes": MiB}
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
            bench_backend(name, settings, root, data, args, results)
    finally:
        if postgres is not None:
            postgres.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    out = HERE / "results" / f"ingest-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print()
    print(f"| measurement ({mib} MiB of 1 MiB appends, median of {args.runs}) | MB/s | disk, interleaved | × disk |")
    print("|---|---|---|---|")
    for key, value in results.items():
        if isinstance(value, dict):
            print(f"| {key} | {value['mbps']:.0f} | {value['disk_mbps']:.0f} | {value['ratio']:.2f} |")
    print(f"\nJSON: {out}")

if __name__ == "__main__":
    main()
