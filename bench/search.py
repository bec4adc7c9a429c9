"""Benchmark search: jobtail's search endpoint against grep on the same bytes, and the server's
responsiveness while searches run.

    .venv/bin/python bench/search.py [--size 1g] [--runs 3] [--keep]

Builds one task log (default 1 GiB) of realistic training-log text through the store and writes
the same bytes to a plain file (`logs.build`), plus a 128 MiB task log of random `a`/`b` lines that
makes RE2's DFA give up (its slowest case). Then, with `jobtail serve --workers 1`:

1. Throughput (search budget 600 s, so whole scans are measured): for each query, every matching
   line through the HTTP API — `GET …/logs/search?limit=1000`, continued with `next_after_line`
   until `complete` — next to `grep -c` (`-F`, `-ciF`, `-cE`) over the file, `LC_ALL=C`, the two
   alternating within each run; the count of matching lines must agree. Time = wall clock of all
   requests of one scan (client on the same machine); MB/s = log bytes / time (MB = 10^6 B);
   `scanned_bytes` summed over the requests must cover the log (a page stopped by `limit`
   counts its whole window, which the next page scans again from its line on). Medians of `--runs`.
2. Responsiveness (the default budget, 10 s): while a search runs in the same server process —
   the adversarial expression over the random log, then `(a+)+$` over the large one — one client
   requests `/healthz` and a preview of a small log every 20 ms; their latencies (p50, p99, max)
   next to the same requests with no search running. The adversarial search must stop at its
   budget: its duration is reported.
Prints tables and writes JSON to bench/results/. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside this file
from _harness import Jobtail, exit_on_sigterm, free_port, median, percentile, say
from _loggen import MiB
from jobtail.client import Client, connect
from jobtail.core.types import TaskRef
from jobtail.settings import Settings
from jobtail.wiring import open_store
from logs import bench_credentials, build, parse_size

# (name, query parameters, grep arguments). Each kind of query twice: rare (`logs.build` plants
# a needle line every 16 MiB, so the scan is the cost) and common (~70 matching lines a MiB, so
# the work per match is: its line number, its line, a thousand matches per page).
QUERIES: list[tuple[str, dict[str, str], list[str]]] = [
    ("plain, rare", {"q": "NEEDLE-"}, ["-c", "-F", "NEEDLE-"]),
    ("plain, common", {"q": "NCCL timeout"}, ["-c", "-F", "NCCL timeout"]),
    ("ignore-case, rare", {"q": "needle-", "ignore_case": "true"}, ["-c", "-i", "-F", "needle-"]),
    ("ignore-case, common", {"q": "nccl TIMEOUT", "ignore_case": "true"}, ["-c", "-i", "-F", "nccl TIMEOUT"]),
    ("regex, rare, no literal prefix", {"q": "[0-9]{6} planted here$", "regex": "true"},
     ["-c", "-E", "[0-9]{6} planted here$"]),
    ("regex, common", {"q": "NCCL timeout on rank [0-9]+ after 1[0-9]{3} s", "regex": "true"},
     ["-c", "-E", "NCCL timeout on rank [0-9]+ after 1[0-9]{3} s"]),
    ("regex (a+)+$", {"q": "(a+)+$", "regex": "true"}, ["-c", "-E", "(a+)+$"]),
]
ADVERSARIAL = "(?:a|aa)+b[ab]{20}c"  # more DFA states than RE2 caches over random a/b text
PROBE_EVERY = 0.02


def adversarial_log(data_dir: Path, size: int) -> str:
    """A task log of random a/b lines (199 bytes and a newline); returns its job id."""
    store = open_store(Settings(data_dir=data_dir))
    job = store.create_job("bench", "adversarial")
    ref = TaskRef("bench", job.id, "worker-0")
    rng, table = random.Random(14), bytes(b"ab"[i % 2] for i in range(256))
    for _ in range(0, size, 8 * MiB):
        raw = rng.randbytes(8 * MiB).translate(table)
        appended = store.append(ref, b"\n".join(raw[i : i + 199] for i in range(0, len(raw), 200)) + b"\n")
        if appended.seal_due:
            store.seal_log(appended.log_id)
    small = store.create_job("bench", "small")
    store.append(TaskRef("bench", small.id, "worker-0"), b"a small log for the preview\n" * 100)
    store.seal(ref)
    store.close()
    return job.id + " " + small.id


def scan(client: Client, path: str, params: dict[str, str]) -> tuple[float, int, int]:
    """Every matching line: (seconds, matching lines, scanned bytes)."""
    count, scanned, after = 0, 0, None
    start = time.perf_counter()
    while True:
        page = client.json("GET", path, params={**params, "limit": "1000",
                                                **({"after_line": after} if after else {})})
        count += page["count"]
        scanned += page["scanned_bytes"]
        if page["complete"]:
            return time.perf_counter() - start, count, scanned
        assert page["stopped_by"] == "limit", page["stopped_by"]
        after = page["next_after_line"]


def grep(file: Path, args: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    done = subprocess.run(["grep", *args, str(file)], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise RuntimeError(f"grep failed: {done.stderr}")
    return elapsed, int(done.stdout)


def probe(client: Client, paths: dict[str, str], stop: threading.Event) -> dict[str, list[float]]:
    """Latencies of each path, requested in turn every PROBE_EVERY until `stop`."""
    seen: dict[str, list[float]] = {name: [] for name in paths}
    while not stop.is_set():
        for name, path in paths.items():
            start = time.perf_counter()
            response = client.request("GET", path)
            seen[name].append(time.perf_counter() - start)
            assert response.status_code == 200, response.text
        stop.wait(PROBE_EVERY)
    return seen


def responsiveness(client: Client, credentials: Path, paths: dict[str, str],
                   search: tuple[str, dict[str, str]] | None, idle_seconds: float = 3.0) -> dict[str, Any]:
    """Probe latencies while `search` runs (or for `idle_seconds` with none), and the search's
    duration and stop reason."""
    stop, outcome = threading.Event(), {}

    def run() -> None:
        if search is None:
            time.sleep(idle_seconds)
        else:
            start = time.perf_counter()
            with connect(str(client.http.base_url), credentials_file=credentials) as own:
                page = own.json("GET", search[0], params=search[1])
            outcome.update(seconds=time.perf_counter() - start, stopped_by=page["stopped_by"],
                           scanned_bytes=page["scanned_bytes"])
        stop.set()

    worker = threading.Thread(target=run)
    worker.start()
    seen = probe(client, paths, stop)
    worker.join()
    return {**outcome, "latency": {name: {"p50": percentile(v, 0.5), "p99": percentile(v, 0.99), "max": max(v),
                                          "n": len(v)} for name, v in seen.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1g", help="log size: 256m, 1g, ... (default 1g)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    root = Path(tempfile.mkdtemp(prefix="jobtail-bench-search-"))
    try:
        data_dir, file = root / "data", root / "log.txt"
        say(f"building a {args.size} log and a 128 MiB adversarial one in {root}")
        job_id, _needles, _sha = build(data_dir, file, parse_size(args.size))
        adversarial_id, small_id = adversarial_log(data_dir, 128 * MiB).split()
        credentials = bench_credentials(data_dir)
        task = f"/v2/bench/training-jobs/{job_id}/tasks/worker-0/logs"
        size = file.stat().st_size
        results: dict[str, Any] = {"size": size, "runs": args.runs, "throughput": {}, "responsiveness": {}}

        os.environ["JOBTAIL_SEARCH_BUDGET_SECONDS"] = "600"  # whole scans, not the budget
        with Jobtail(data_dir, free_port(), 1, root / "jobtail.log") as jt, \
                connect(jt.base, credentials_file=credentials) as client:
            scan(client, task + "/search", QUERIES[0][1])  # warm-up: first connections, caches
            grep(file, QUERIES[0][2])
            for name, params, grep_args in QUERIES:
                jt_times, grep_times = [], []
                for run in range(args.runs):
                    order = ["jobtail", "grep"] if run % 2 == 0 else ["grep", "jobtail"]
                    for who in order:
                        if who == "jobtail":
                            seconds, count, scanned = scan(client, task + "/search", params)
                            assert scanned >= size, f"{name}: scanned {scanned} of {size} bytes"
                            jt_times.append(seconds)
                            jt_count = count
                        else:
                            seconds, grep_count = grep(file, grep_args)
                            grep_times.append(seconds)
                assert jt_count == grep_count, f"{name}: jobtail found {jt_count} lines, grep {grep_count}"
                results["throughput"][name] = {"matches": jt_count, "jobtail_s": jt_times, "grep_s": grep_times}
                say(f"{name}: {jt_count} lines; jobtail {median(jt_times):.2f} s, grep {median(grep_times):.2f} s")

        os.environ.pop("JOBTAIL_SEARCH_BUDGET_SECONDS")
        with Jobtail(data_dir, free_port(), 1, root / "jobtail-default.log") as jt, \
                connect(jt.base, credentials_file=credentials) as client:
            paths = {"/healthz": "/healthz", "preview": f"/v2/bench/training-jobs/{small_id}/tasks/worker-0/logs/preview"}
            adversarial = f"/v2/bench/training-jobs/{adversarial_id}/tasks/worker-0/logs/search"
            for name, search in (
                ("no search", None),
                (f"{ADVERSARIAL} over 128 MiB of random a/b lines", (adversarial, {"q": ADVERSARIAL, "regex": "true"})),
                (f"(a+)+$ over the {args.size} log", (task + "/search", {"q": "(a+)+$", "regex": "true"})),
            ):
                results["responsiveness"][name] = responsiveness(client, credentials, paths, search)
                say(f"{name}: {results['responsiveness'][name]}")
        report(results, args.size)
        out_dir = Path(__file__).parent / "results"
        out_dir.mkdir(exist_ok=True)
        (out_dir / f"search-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(results, indent=2))
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def report(results: dict[str, Any], size_name: str) -> None:
    mb = results["size"] / 1e6
    print(f"\n{size_name} log ({results['size'] / MiB:,.0f} MiB); medians of {results['runs']} runs, interleaved; "
          "MB = 10^6 B; jobtail through HTTP (all pages of 1000), grep -c on the same bytes in a file\n")
    print("| query | lines | jobtail | grep | ratio |\n|---|---|---|---|---|")
    for name, row in results["throughput"].items():
        t_jt, t_grep = median(row["jobtail_s"]), median(row["grep_s"])
        print(f"| {name} | {row['matches']:,} | {t_jt:.2f} s, {mb / t_jt:,.0f} MB/s | {t_grep:.2f} s, "
              f"{mb / t_grep:,.0f} MB/s | {t_grep / t_jt:.2f} |")
    print("\n| while | search | /healthz p50 / p99 / max | preview p50 / p99 / max |\n|---|---|---|---|")
    for name, row in results["responsiveness"].items():
        search = "" if "seconds" not in row else (
            f"{row['seconds']:.1f} s, stopped by {row['stopped_by']}, {row['scanned_bytes'] / 1e6:,.0f} MB scanned")
        cells = [" / ".join(f"{row['latency'][probe_name][k] * 1000:.1f}" for k in ("p50", "p99", "max")) + " ms"
                 for probe_name in ("/healthz", "preview")]
        print(f"| {name} | {search} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    sys.exit(main())
