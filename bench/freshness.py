"""Benchmark freshness: how long a line a task prints takes to reach the preview and a follow stream.

    .venv/bin/python bench/freshness.py              # 300 quiet lines, 5 s busy (~1 min)
    .venv/bin/python bench/freshness.py --quick      # 100 quiet lines, 3 s busy
    .venv/bin/python bench/freshness.py --isolation none --quiet-lines 500 --busy-rate 20000

A real `jobtail serve` (one process, the local executor, sandboxed with bubblewrap by default)
runs one job whose task prints `fresh <seq> <epoch seconds>` lines, flushed one by one:

1. quiet: one line every `--quiet-gap` seconds (50 ms), as a training loop logs a step;
2. busy: `--busy-rate` lines per second (10,000 ≈ 1 MB/s) for `--busy-seconds`, in bursts of
   1 ms, as a chatty data loader or a tqdm bar does.

Meanwhile one client follows the task's stream (`…/logs/stream?timestamps=true`, the
`jobtail.client.LogFollow` a CLI `-f` uses) and another polls the preview (`…/logs/preview`,
quiet phase only: the busy log's 5 MiB preview recomputed in a loop would measure the preview,
not freshness). A line's latency is the time it was received (the follow event, the preview
response) minus the time the task printed it; same machine, same clock. The preview figure
includes up to one polling gap (`--poll-gap`, 2 ms) plus one request. Reported: p50/p99 per phase,
the appends the capture made per second in each phase (one arrival time per append in the
follow's `times`), which is what freshness costs the store, and the server's CPU use in each phase
(its processes but not the sandboxed task, sampled every 50 ms; the quiet phase's includes the
preview polling).

The baseline is the same path with no batching at all: the README quotes 3-4 ms for it (the
capture appending every read at once); the target is p99 ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _harness import Jobtail, cmdline, descendants, free_port, percentile, say  # noqa: E402
from jobtail.auth import manage  # noqa: E402
from jobtail.auth.secrets import load_master_key  # noqa: E402
from jobtail.client import Client, Credentials  # noqa: E402
from jobtail.settings import Settings  # noqa: E402
from jobtail.wiring import open_identity  # noqa: E402

PROJECT = "benchfresh"
LINE = re.compile(rb"fresh (\d+) (\d+\.\d+)[ \n]")

TASK = """\
import sys, time
quiet, gap, rate, busy = {quiet}, {gap}, {rate}, {busy}
out = sys.stdout
time.sleep(1.0)  # the followers connect first
for i in range(quiet):
    out.write("fresh %d %.6f\\n" % (i, time.time())); out.flush()
    time.sleep(gap)
i, began = quiet, time.time()
pad = "x" * 60
while time.time() - began < busy:
    burst = max(1, rate // 1000)
    for _ in range(burst):
        out.write("fresh %d %.6f %s\\n" % (i, time.time(), pad)); i += 1
    out.flush()
    time.sleep(0.001)
out.write("done %d\\n" % i); out.flush()
"""


def credentials(settings: Settings) -> Credentials:
    with open_identity(settings) as identity:
        if PROJECT not in {p.id for p in identity.projects()}:
            manage.create_project(identity, PROJECT, PROJECT)
        issued = manage.create_credential(identity, load_master_key(Path(settings.master_key_file)),
                                          project_id=PROJECT, role="developer")
    return Credentials(issued.credential.access_key, issued.secret_key, PROJECT)


class Seen:
    """Receive times of lines by sequence number, with the phase boundary."""

    def __init__(self, quiet: int) -> None:
        self.quiet = quiet
        self.latency: dict[int, float] = {}
        self.printed: dict[int, float] = {}

    def add(self, data: bytes, received: float) -> None:
        for match in LINE.finditer(data):
            seq = int(match.group(1))
            if seq not in self.latency:
                self.printed[seq] = float(match.group(2))
                self.latency[seq] = received - self.printed[seq]

    def phase(self, busy: bool) -> list[float]:
        return [ms * 1000 for seq, ms in self.latency.items() if (seq >= self.quiet) == busy]

    def span(self, busy: bool) -> tuple[float, float]:
        """When the phase's first and last lines were printed."""
        times = [at for seq, at in self.printed.items() if (seq >= self.quiet) == busy]
        return (min(times), max(times)) if times else (0.0, 0.0)


def follow(client: Client, job_id: str, seen: Seen, appends: list[tuple[int, float]]) -> None:
    stream = client.follow(job_id, "worker-0", timestamps=True)
    pending = b""
    for _, data in stream:
        received = time.time()
        pending += data
        cut = pending.rfind(b"\n") + 1
        seen.add(pending[:cut], received)
        pending = pending[cut:]
        appends.extend(stream.times)


def poll_preview(client: Client, job_id: str, seen: Seen, stop: threading.Event, gap: float) -> int:
    path = f"/v2/{PROJECT}/training-jobs/{job_id}/tasks/worker-0/logs/preview"
    polls = 0
    while not stop.is_set():
        r = client.request("GET", path)
        received = time.time()
        polls += 1
        if r.status_code == 200:
            seen.add(r.json()["content"].encode(), received)
            if len([s for s in seen.latency if s < seen.quiet]) >= seen.quiet:
                return polls
        time.sleep(gap)
    return polls


def server_cpu_seconds(pid: int) -> float:
    """User + system seconds of the server's processes: `pid` and its descendants, without the
    sandboxed tasks (a `bwrap` process and everything under it), whose printing is not the store's work."""
    tasks: set[int] = set()
    pids = [pid, *descendants(pid)]
    for p in pids:
        if Path(cmdline(p).split(" ")[0]).name == "bwrap":
            tasks.update([p, *descendants(p)])
    total = 0.0
    for p in pids:
        if p not in tasks:
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def sample_cpu(pid: int, samples: list[tuple[float, float]], stop: threading.Event) -> None:
    """(time, server CPU seconds) every 50 ms until `stop`."""
    while not stop.wait(0.05):
        samples.append((time.time(), server_cpu_seconds(pid)))


def cpu_share(samples: list[tuple[float, float]], first: float, last: float) -> float:
    """The server's CPU use between `first` and `last` (1.0 = one core), from the samples inside."""
    inside = [(at, cpu) for at, cpu in samples if first <= at <= last]
    if len(inside) < 2:
        return float("nan")
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": percentile(values, 0.5), "p99_ms": percentile(values, 0.99),
            "max_ms": max(values, default=float("nan"))}


def rate_of(appends: list[tuple[int, float]], first: float, last: float) -> float:
    """Appends per second whose arrival time lies in [first, last]."""
    inside = {offset for offset, at in appends if first <= at <= last}
    return len(inside) / max(last - first, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet-lines", type=int, default=300)
    parser.add_argument("--quiet-gap", type=float, default=0.05)
    parser.add_argument("--busy-rate", type=int, default=10_000, help="lines per second in the busy phase")
    parser.add_argument("--busy-seconds", type=float, default=5.0)
    parser.add_argument("--poll-gap", type=float, default=0.002)
    parser.add_argument("--isolation", default="bwrap", choices=("bwrap", "none"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--label", default="", help="a name for this run in the JSON")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.quiet_lines, args.busy_seconds = 100, 3.0
    root = Path(tempfile.mkdtemp(prefix="jobtail-fresh-", dir=os.environ.get("BENCH_DIR", "/tmp")))
    settings = Settings(data_dir=root / "data")
    keys = credentials(settings)
    script = TASK.format(quiet=args.quiet_lines, gap=args.quiet_gap, rate=args.busy_rate, busy=args.busy_seconds)
    command = "/usr/bin/python3 -u -c " + "'" + script.replace("'", "'\\''") + "'"
    port = free_port()
    results: dict[str, object] = {"label": args.label, "args": vars(args)}
    try:
        with Jobtail(settings.data_dir, port, 1, root / "serve.log",
                     extra=["--executor", "local", "--executor-isolation", args.isolation,
                            "--rate-limit-per-second", "0"]) as server, \
                Client(server.base, credentials=keys) as http, Client(server.base, credentials=keys) as poller:
            body = {"kind": "job", "metadata": {"name": "fresh"}, "algorithm": {"command": command},
                    "spec": {"resource": {"node_count": 1}}}
            r = http.request("POST", f"/v2/{PROJECT}/training-jobs", json=body)
            if r.status_code != 201:
                raise RuntimeError(f"create failed: {r.status_code} {r.text}")
            job_id = r.json()["metadata"]["id"]
            say(f"job {job_id}: {args.quiet_lines} quiet lines, then {args.busy_rate} lines/s for {args.busy_seconds:g} s")
            by_follow, by_preview = Seen(args.quiet_lines), Seen(args.quiet_lines)
            appends: list[tuple[int, float]] = []
            stop = threading.Event()
            assert server.proc is not None
            cpu: list[tuple[float, float]] = []
            sampler = threading.Thread(target=sample_cpu, args=(server.proc.pid, cpu, stop), daemon=True)
            sampler.start()
            follower = threading.Thread(target=follow, args=(http, job_id, by_follow, appends), daemon=True)
            follower.start()
            polls = poll_preview(poller, job_id, by_preview, stop, args.poll_gap)
            follower.join(args.busy_seconds + args.quiet_lines * args.quiet_gap + 60)
            stop.set()
        results["follow quiet"] = summary(by_follow.phase(False))
        results["follow busy"] = summary(by_follow.phase(True))
        results["preview quiet"] = summary(by_preview.phase(False))
        results["preview polls"] = polls
        results["appends/s quiet"] = rate_of(appends, *by_follow.span(False))
        results["appends/s busy"] = rate_of(appends, *by_follow.span(True))
        results["server CPU quiet"] = cpu_share(cpu, *by_follow.span(False))
        results["server CPU busy"] = cpu_share(cpu, *by_follow.span(True))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    out = HERE / "results" / f"freshness-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print()
    print(f"| printed line → (isolation {args.isolation}) | lines | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    for key in ("preview quiet", "follow quiet", "follow busy"):
        v = results[key]
        assert isinstance(v, dict)
        print(f"| {key} | {v['n']} | {v['p50_ms']:.1f} | {v['p99_ms']:.1f} | {v['max_ms']:.1f} |")
    for key in ("appends/s quiet", "appends/s busy"):
        if key in results:
            print(f"{key}: {results[key]:.1f}")
    for key in ("server CPU quiet", "server CPU busy"):
        if key in results:
            print(f"{key}: {results[key]:.1%} of a core")
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    main()
