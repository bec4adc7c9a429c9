"""Benchmark reading a whole log: search against `grep -c`, download against nginx.

    .venv/bin/python bench/logs.py [--size 1g] [--keep]

Builds one task log (default 1 GiB) of realistic training-log text with a needle line planted
every 16 MiB, writes the same bytes to a plain file, and measures in the same run:

- search: jobtail's search endpoint finding every needle (checked: count and line numbers)
  next to `grep -c` over the file (median of 3 runs each; MB/s = log bytes / time);
- download: the whole log through a temporary link next to nginx serving the file, both with
  curl into /dev/null (runs interleaved; each server's bytes sha256-checked once, untimed), with
  the jobtail worker's resident memory sampled every 20 ms during the download.
Prints a table and writes JSON to bench/results/. See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside this file
from _harness import Jobtail, Nginx, ensure_tools, exit_on_sigterm, free_port, median, say
from _loggen import CHUNK, LogMaker, MiB
from jobtail.client import connect
from jobtail.core.store import LogStore
from jobtail.core.types import JobRecord, JobSpec, TaskRef
from jobtail.settings import Settings
from jobtail.wiring import open_jobs

NEEDLE_EVERY = 16 * MiB
RUNS = 3


def parse_size(text: str) -> int:
    units = {"k": 1024, "m": MiB, "g": 1024 * MiB}
    return int(text[:-1]) * units[text[-1].lower()] if text[-1].lower() in units else int(text)


def build(data_dir: Path, path: Path, size: int) -> tuple[str, list[int], str]:
    """Write the log through the store and to `path`; returns (job id, needle line numbers, sha256)."""
    with open_jobs(Settings(data_dir=data_dir)) as (jobs, store):
        return _write(jobs.create("bench", JobSpec("logs"), "none"), store, path, size)


def _write(job: JobRecord, store: LogStore, path: Path, size: int) -> tuple[str, list[int], str]:
    ref = TaskRef("bench", job.id, "worker-0")
    digest, needles, lines, written, next_needle = hashlib.sha256(), [], 0, 0, NEEDLE_EVERY
    with path.open("wb") as f:
        for chunk in LogMaker().chunks(size):
            if written + len(chunk) >= next_needle:
                needle = b"NEEDLE-%06d planted here\n" % len(needles)
                needles.append(lines + chunk.count(b"\n") + 1)
                chunk += needle
                next_needle += NEEDLE_EVERY
            store.append(ref, chunk)  # full heads are sealed in the background, as in the server
            f.write(chunk)
            digest.update(chunk)
            lines += chunk.count(b"\n")
            written += len(chunk)
    store.seal(ref)
    return job.id, needles, digest.hexdigest()


def bench_credentials(data_dir: Path) -> Path:
    """A developer credential for the `bench` project, written like the bootstrap file."""
    jobtail = [sys.executable, "-m", "jobtail", "admin"]
    common = ["--data-dir", str(data_dir)]
    subprocess.run([*jobtail, "project", "create", "--id", "bench", "bench", *common], check=True,
                   capture_output=True)
    made = subprocess.run([*jobtail, "credential", "create", "--project", "bench", "--role", "developer", "--json",
                           *common], check=True, capture_output=True, text=True).stdout
    path = data_dir / "bench-credentials.json"
    path.write_text(made)
    path.chmod(0o600)
    return path


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def timed_download(url: str, pid: int | None) -> tuple[float, int, int]:
    """(seconds, bytes, peak RSS of `pid` while downloading), downloaded by curl into /dev/null.

    curl is the client so that the figure is the server's (no Python on the client side):
    an httpx client hashing in Python tops out near 400 MB/s here, below what either server sends.
    """
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while pid is not None and not stop.is_set():
            peak[0] = max(peak[0], rss(pid))
            stop.wait(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        done = subprocess.run(["curl", "-sS", "--fail", "-o", "/dev/null", "-H", "Accept-Encoding: identity",
                               "-w", "%{size_download} %{time_total}", url],
                              capture_output=True, text=True, check=True)
    finally:
        stop.set()
        sampler.join()
    size, seconds = done.stdout.split()
    return float(seconds), int(size), peak[0]


def download_sha256(url: str) -> str:
    """The sha256 of what `url` sends (curl piped into sha256sum; not timed)."""
    curl = subprocess.Popen(["curl", "-sS", "--fail", "-H", "Accept-Encoding: identity", url], stdout=subprocess.PIPE)
    digest = subprocess.run(["sha256sum"], stdin=curl.stdout, capture_output=True, text=True, check=True).stdout
    if curl.wait() != 0:
        raise RuntimeError(f"curl {url} failed")
    return digest.split()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1g", help="log size: 256m, 1g, ... (default 1g)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    exit_on_sigterm()
    nginx_exe, _wrk = ensure_tools()
    grep = shutil.which("grep") or "grep"
    root = Path(tempfile.mkdtemp(prefix="jobtail-bench-logs-"))
    try:
        data_dir, www = root / "data", root / "www"
        root.chmod(0o755)  # nginx's workers (www-data) must reach www/
        www.mkdir(mode=0o755)
        (www / "probe.txt").write_text("ok")  # the readiness probe must not fetch the whole log
        say(f"building a {args.size} log (needle every 16 MiB) in {root}")
        job_id, needles, sha = build(data_dir, www / "log.txt", size)
        os.environ["JOBTAIL_SEARCH_BUDGET_SECONDS"] = "600"  # measure whole scans, not the budget
        with Jobtail(data_dir, free_port(), 1, root / "jobtail.log") as jt, \
                Nginx(nginx_exe, root / "nginx", www, free_port(), "/probe.txt") as ng:
            client = connect(jt.base, credentials_file=bench_credentials(data_dir))
            task = f"/v2/bench/training-jobs/{job_id}/tasks/worker-0/logs"
            search_times, grep_times = [], []
            for _ in range(RUNS):
                start = time.perf_counter()
                found = client.json("GET", task + "/search", params={"q": "NEEDLE-", "limit": "1000"})
                search_times.append(time.perf_counter() - start)
                assert [int(m["line"]) for m in found["matches"]] == needles, "search missed or misplaced a needle"
                start = time.perf_counter()
                out = subprocess.run([grep, "-c", "NEEDLE-", str(www / "log.txt")], capture_output=True, text=True,
                                     env={**os.environ, "LC_ALL": "C"}, check=True).stdout
                grep_times.append(time.perf_counter() - start)
                assert int(out) == len(needles)
            link = client.json("GET", task + "/url", params={"Content-Type": "application/octet-stream"})["obs_url"]
            worker = jt.pids()[0]
            base_rss = rss(worker)
            for url in (link, f"{ng.base}/log.txt"):
                assert download_sha256(url) == sha, f"{url} sends other bytes than the log"
            jt_runs, ng_runs = [], []
            for _ in range(RUNS):  # interleaved: the machine's other load falls on both alike
                jt_runs.append(timed_download(link, worker))
                ng_runs.append(timed_download(f"{ng.base}/log.txt", None))
            client.close()
        for _, size_sent, _ in jt_runs + ng_runs:
            assert size_sent == (www / "log.txt").stat().st_size, "a download was cut short"
        total = (www / "log.txt").stat().st_size
        t_search, t_grep = median(search_times), median(grep_times)
        t_jt, t_ng = median([r[0] for r in jt_runs]), median([r[0] for r in ng_runs])
        peak = max(r[2] for r in jt_runs)
        mb = total / 1e6
        rows = [
            f"log: {total / MiB:,.0f} MiB, {len(needles)} needles; medians of {RUNS} runs (MB = 10^6 B)",
            f"search   jobtail {t_search:7.2f} s  {mb / t_search:8.0f} MB/s   grep -c {t_grep:6.2f} s  "
            f"{mb / t_grep:8.0f} MB/s   ratio {t_grep / t_search:.2f}",
            f"download jobtail {t_jt:7.2f} s  {mb / t_jt:8.0f} MB/s   nginx   {t_ng:6.2f} s  "
            f"{mb / t_ng:8.0f} MB/s   ratio {t_ng / t_jt:.2f}",
            f"jobtail worker RSS: {base_rss / MiB:.0f} MiB before the downloads, peak {peak / MiB:.0f} MiB during "
            f"them ({(peak - base_rss) / MiB:+.0f} MiB for a {total / MiB:,.0f} MiB log)",
        ]
        print("\n".join(rows))
        out_dir = Path(__file__).parent / "results"
        out_dir.mkdir(exist_ok=True)
        result = {"size": total, "needles": len(needles), "search_s": search_times, "grep_s": grep_times,
                  "download_s": [r[0] for r in jt_runs], "nginx_s": [r[0] for r in ng_runs],
                  "rss_before": base_rss, "rss_peak": peak, "chunk": CHUNK}
        (out_dir / f"logs-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(result, indent=2))
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
