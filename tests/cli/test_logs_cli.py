"""`jobtail logs` beyond the preview: tail, since, timestamps, grep, all tasks, download, follow."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from datetime import datetime
from itertools import pairwise
from pathlib import Path

from support.cli import Cli, sqlite_only
from support.engine import jobs_of, open_engine
from support.jobs import PY
from support.serve import ServeProcess, clean_env

from jobtail.core.types import TaskRef

TICKS = ("import time\n"
         "for i in range(10):\n"
         "    print(f'tick {i} at {time.time():.6f}', flush=True)\n"
         "    time.sleep(0.2)\n")
_TICK = re.compile(r"(\S+Z) tick (\d) at ([0-9.]+)$")


def _ticks(out: str) -> list[tuple[float, int, float]]:
    """(shown time, tick, the task's own clock when it printed it) of each tick line."""
    found = []
    for line in out.splitlines():
        if m := _TICK.match(line):
            shown = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
            found.append((shown, int(m.group(2)), float(m.group(3))))
    return found


def _each_line_its_own_time(ticks: list[tuple[float, int, float]]) -> None:
    """Lines printed 200 ms apart show times 200 ms apart (±50 ms): each line its own arrival."""
    assert len(ticks) >= 5, ticks
    for (shown, _, own), (next_shown, _, next_own) in pairwise(ticks):
        assert next_own - own >= 0.2
        assert abs((next_shown - shown) - (next_own - own)) <= 0.05, ticks  # the task's own gap, the sleep


def test_timestamps_are_each_lines_own_before_and_after_sealing_and_since_cuts_at_the_append(tmp_path: Path) -> None:
    """A real `jobtail serve` runs the job (its capture in a process of its own, as in production)
    and the real CLI reads it, while it runs, while following and after it ended and was sealed."""
    work = tmp_path / "work"
    work.mkdir()
    server = ServeProcess(tmp_path / "data", "--executor-shared-dirs", str(work))
    server.start("--executor", "local")
    env = clean_env(JOBTAIL_URL=server.url, JOBTAIL_CREDENTIALS=str(server.admin_credentials()))

    def cli(*args: str, check: bool = True) -> str:
        done = subprocess.run([sys.executable, "-m", "jobtail", *args], env=env, cwd=work, capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0 or not check, done.stderr
        return done.stdout if done.returncode == 0 else ""

    try:
        job_id = cli("submit", "--", PY, "-c", TICKS).strip()
        deadline = time.monotonic() + 30
        while len(_ticks(running := cli("logs", job_id, "--timestamps", check=False))) < 5:
            assert time.monotonic() < deadline, "the job never printed five ticks"
            time.sleep(0.2)
        _each_line_its_own_time(_ticks(running))  # from the head: the job still runs
        followed = _ticks(cli("logs", job_id, "-f", "--timestamps"))  # on, live, until the job ends
        assert [tick for _, tick, _ in followed] == list(range(10))
        _each_line_its_own_time(followed)
        shown = json.loads(cli("jobs", "show", job_id, "--json"))
        assert shown["status"]["phase"] == "Completed"
        store = open_engine(f"sqlite:///{tmp_path / 'data' / 'jobtail.db'}", (tmp_path / "data" / "blobs").as_uri()).store
        try:
            state = store.state(TaskRef(server.project(), job_id, "worker-0"))
            assert state.head_bytes == 0 and state.sealed_offset == state.end_offset, "sealed when the task ended"
        finally:
            store.close()
        sealed = cli("logs", job_id, "--timestamps")
        ticks = _ticks(sealed)
        assert [tick for _, tick, _ in ticks] == list(range(10))
        _each_line_its_own_time(ticks)
        assert _ticks(running) == ticks[: len(_ticks(running))], "the same times from the head and from the segments"
        assert followed == ticks, "and while following"
        (fifth,) = [line for line in sealed.splitlines() if " tick 5 at " in line]
        since = fifth.split(" ", 1)[0]  # the shown time (ms, cut down) of tick 5's append
        assert cli("logs", job_id, "--since", since).startswith("tick 5 at ")
    finally:
        server.stop()


def _job(cli: Cli) -> tuple[str, TaskRef, TaskRef]:
    job_id = cli.live.create_job(cli.project, "logs-cli", node_count=2).id
    return job_id, TaskRef(cli.project, job_id, "worker-0"), TaskRef(cli.project, job_id, "worker-1")


@sqlite_only
def test_tail_since_timestamps_grep_and_all_tasks(cli: Cli) -> None:
    job_id, w0, w1 = _job(cli)
    for i in range(700):
        cli.live.store.append(w0, b"step %d loss=%s\n" % (i, b"nan" if i % 100 == 0 else b"0.1"))
    cli.live.store.append(w1, b"rank one says hi\nrank one done\n")

    assert cli("logs", job_id, "--tail", "3").stdout == "step 697 loss=0.1\nstep 698 loss=0.1\nstep 699 loss=0.1\n"
    assert len(cli("logs", job_id, "--tail", "600").stdout.splitlines()) == 600  # more than one page
    stamped = cli("logs", job_id, "-t", "worker-1", "--since", "1h", "--timestamps").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["rank one says hi", "rank one done"]
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ", line) for line in stamped)
    assert cli("logs", job_id, "--since", "1m", "-t", "worker-1").stdout == "rank one says hi\nrank one done\n"
    assert cli("logs", job_id, "--grep", "loss=n.n").stdout.splitlines() == [
        f"{i + 1}:step {i} loss=nan" for i in range(0, 700, 100)]
    merged = cli("logs", job_id, "--all-tasks", "--tail", "1").stdout.splitlines()
    assert sorted(merged) == ["[worker-0] step 699 loss=0.1", "[worker-1] rank one done"]
    assert "\x1b[" not in cli("logs", job_id, "--all-tasks", "--tail", "1").stdout  # no colours off a terminal


@sqlite_only
def test_download_saves_the_whole_log(cli: Cli, tmp_path: Path) -> None:
    job_id, w0, _ = _job(cli)
    log = b"".join(b"%05d \xe6\x90\x8d\n" % i for i in range(30_000)) + b"unfinished"
    cli.live.store.append(w0, log)
    target = tmp_path / "out" / "worker-0.log"
    target.parent.mkdir()
    result = cli("logs", job_id, "--download", str(target))
    assert target.read_bytes() == log
    assert f"saved {target} ({len(log)} bytes)" in result.stderr


@sqlite_only
def test_follow_prints_history_then_live_bytes_until_the_job_ends(cli: Cli) -> None:
    job_id, w0, _ = _job(cli)
    cli.live.store.append(w0, b"before\n")

    def later() -> None:
        time.sleep(0.5)
        cli.live.store.append(w0, b"progress 50%\r")
        cli.live.store.append(w0, b"progress 100%\nafter\n")
        time.sleep(0.3)
        jobs_of(cli.live.store).terminate(cli.project, job_id)

    writer = threading.Thread(target=later)
    writer.start()
    result = cli("logs", job_id, "-f")
    writer.join()
    assert result.stdout == "before\nprogress 50%\rprogress 100%\nafter\n"
    assert "[worker-0] log stream ended: job terminated" in result.stderr

    tail_follow = cli("logs", job_id, "-f", "--tail", "1", "--grep", "after")
    assert tail_follow.stdout == "after\n"
