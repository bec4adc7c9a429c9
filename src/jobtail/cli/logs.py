"""`jobtail logs JOB [-t TASK]`: a task's log, like `ma-cli ma-job get-log -i JOB -t worker-0`.

Without options it prints the ModelArts preview (the newest 5 MiB) as stored: carriage returns,
ANSI colours and all. `--tail`, `--since`, `--timestamps` and `--grep` page through the whole log
with the line API and search; `-f` follows it live and resumes exactly after network errors;
`--all-tasks` merges every task's lines by arrival time with a coloured `[worker-N]` prefix;
`--download` saves the whole log through a temporary link, with a progress bar; `--attempt N`
prints the part of the log that attempt N of a restarted job wrote (from the attempt offsets in
its running records).
"""

from __future__ import annotations

import heapq
import queue
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click

from jobtail.cli.remote import binary_stdout, connection_options, job_path, open_client
from jobtail.core.timespec import format_instant

PAGE = 500  # the line API's largest page
_COLOURS = ["cyan", "green", "yellow", "magenta", "blue", "red"]


@click.command()
@click.argument("job_id")
@click.option("--task", "-t", default="worker-0", show_default=True, help="Task whose log to print.")
@click.option("--all-tasks", is_flag=True, help="Every task, merged by arrival time, each line prefixed [task].")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the job ends.")
@click.option("--tail", type=click.IntRange(min=0), help="Only the last N lines.")
@click.option("--since", help="Only lines that arrived since: 10m, 2h, an ISO 8601 time or epoch ms.")
@click.option("--timestamps", is_flag=True, help="Prefix each line with the time it arrived.")
@click.option("--grep", "pattern", help="Only lines matching this regular expression.")
@click.option("--download", type=click.Path(path_type=Path, dir_okay=False),
              help="Save the whole log to this file (progress on stderr).")
@click.option("--attempt", type=click.IntRange(min=1), help="Only what attempt N (1 = the first) of a restarted job printed.")
@connection_options
def logs(job_id: str, task: str, all_tasks: bool, follow: bool, tail: int | None, since: str | None,
         timestamps: bool, pattern: str | None, download: Path | None, attempt: int | None, **params: Any) -> None:
    """Print a task's log (by default its newest 5 MiB: the ModelArts preview)."""
    if attempt is not None and (follow or all_tasks or tail is not None or since or pattern or download):
        raise click.UsageError("--attempt goes with --task and --timestamps only.")
    with open_client(params) as client:
        if attempt is not None:
            _attempt(client, job_id, task, attempt, timestamps, binary_stdout())
            return
        if download is not None:
            _download(client, job_id, task, download)
            return
        out = binary_stdout()
        tasks = _tasks(client, job_id) if all_tasks else [task]
        plain = not (tail is not None or since or timestamps or pattern or all_tasks)
        if plain and not follow:
            preview = client.json("GET", f"{job_path(job_id)}/tasks/{task}/logs/preview")
            _write(out, preview["content"].encode())
            return
        ends: dict[str, int] = {}
        if pattern is not None and not follow:
            for name in tasks:
                _grep(client, job_id, name, pattern, since, out, _prefix(name, tasks, all_tasks))
            return
        if not plain or not follow:
            merged = heapq.merge(*(_history(client, job_id, name, tail, since, ends) for name in tasks))
            matcher = re.compile(pattern) if pattern else None
            for _stamp, name, text in merged:
                shown = text if timestamps else text.split(" ", 1)[-1]
                if matcher is None or matcher.search(text.split(" ", 1)[-1]):
                    _write_line(out, name, tasks, all_tasks, shown)
        if follow:
            _follow(client, job_id, tasks, ends, since if not ends else None, timestamps, pattern, all_tasks, out)


def _tasks(client: Any, job_id: str) -> list[str]:
    return [t["task"] for t in client.json("GET", f"{job_path(job_id)}/tasks")]


def _prefix(name: str, tasks: list[str], all_tasks: bool) -> bytes:
    """`[worker-N] ` before each line of a merged view, coloured on a terminal."""
    if not all_tasks:
        return b""
    text = f"[{name}] "
    if sys.stdout.isatty():
        text = click.style(text, fg=_COLOURS[tasks.index(name) % len(_COLOURS)])
    return text.encode()


def _write(out: IO[bytes], data: bytes) -> None:
    out.write(data)
    if data and not data.endswith(b"\n") and out.isatty():
        out.write(b"\n")  # keep the prompt off a final unfinished line
    out.flush()


def _write_line(out: IO[bytes], name: str, tasks: list[str], all_tasks: bool, text: str) -> None:
    out.write(_prefix(name, tasks, all_tasks) + text.encode() + b"\n")
    out.flush()


def _history(client: Any, job_id: str, task: str, tail: int | None, since: str | None,
             ends: dict[str, int]) -> Iterator[tuple[str, str, str]]:
    """(arrival time, task, "TIME text") for the task's lines, oldest first; records where the
    snapshot ended in `ends` so a follow continues exactly there."""
    path = f"/v2/{{project_id}}/training-jobs/{job_id}/logs/{task}"
    query: dict[str, Any] = {"timestamps": "true", **({"since": since} if since else {})}
    pages: list[list[str]] = []
    if tail is not None:  # newest first, then reversed
        wanted, base = tail, None
        while wanted > 0:
            page = client.json("GET", path, params={**query, "lines": min(PAGE, wanted),
                                                    **({"base_line": base} if base else {})})
            ends.setdefault(task, page.get("full_size", 0))
            if not page["lines"]:
                break
            pages.append(page["content"].split("\n")[::-1])
            wanted, base = wanted - page["lines"], page["end_line"]
        lines = [line for chunk in reversed(pages) for line in chunk]
        yield from ((line.split(" ", 1)[0], task, line) for line in lines)
        return
    base = None
    while True:
        page = client.json("GET", path, params={**query, "order": "asc", "lines": PAGE,
                                                **({"base_line": base} if base else {})})
        ends[task] = page.get("full_size", 0)  # the newest snapshot: everything before it is printed
        if not page["lines"]:
            return
        for line in page["content"].split("\n"):
            yield line.split(" ", 1)[0], task, line
        base = page["end_line"]


def _attempt(client: Any, job_id: str, task: str, attempt: int, timestamps: bool, out: IO[bytes]) -> None:
    """The lines of the task log from where attempt `attempt` began to where the next began."""
    records = client.json("GET", job_path(job_id))["status"].get("running_records") or []
    if attempt > len(records):
        raise click.ClickException(f"The job has {len(records)} attempt(s); there is no attempt {attempt}.")
    start = records[attempt - 1].get("log_starts", {}).get(task)
    if start is None:
        raise click.ClickException(f"{task} has no log position for attempt {attempt}.")
    after = records[attempt].get("log_starts", {}).get(task) if attempt < len(records) else None
    last = int(after["line"]) - 1 if after else None  # the last line of this attempt
    path = f"/v2/{{project_id}}/training-jobs/{job_id}/logs/{task}"
    base = int(start["line"]) - 1
    while last is None or base < last:
        page = client.json("GET", path, params={"order": "asc", "lines": PAGE, "timestamps": str(timestamps).lower(),
                                                **({"base_line": base} if base else {})})
        if not page["lines"]:
            return
        for number, text in enumerate(page["content"].split("\n"), int(page["start_line"])):
            if last is not None and number > last:
                return
            out.write(text.encode() + b"\n")
        out.flush()
        base = int(page["end_line"])


def _grep(client: Any, job_id: str, task: str, pattern: str, since: str | None, out: IO[bytes], prefix: bytes) -> None:
    path = f"{job_path(job_id)}/tasks/{task}/logs/search"
    after = None
    while True:
        query = {"q": pattern, "regex": "true", "limit": 1000, **({"since": since} if since else {}),
                 **({"after_line": after} if after else {})}
        found = client.json("GET", path, params=query)
        for match in found["matches"]:
            out.write(prefix + f"{match['line']}:{match['content']}\n".encode())
        out.flush()
        if found["complete"]:
            return
        after = found["next_after_line"]


def _follow(client: Any, job_id: str, tasks: list[str], ends: dict[str, int], since: str | None, timestamps: bool,
            pattern: str | None, all_tasks: bool, out: IO[bytes]) -> None:
    """Follow every task at once; lines are printed as they arrive (so merged by arrival time)."""
    matcher = re.compile(pattern.encode()) if pattern else None
    events: queue.Queue[tuple[str, int, bytes | None, list[tuple[int, float]], str | None]] = queue.Queue()

    def pump(name: str) -> None:
        stream = client.follow(job_id, name, offset=ends.get(name), since=since, timestamps=timestamps)
        try:
            for end, data in stream:
                events.put((name, end - len(data), data, stream.times, None))
        finally:
            events.put((name, 0, None, [], stream.reason))

    for name in tasks:
        threading.Thread(target=pump, args=(name,), daemon=True).start()
    partial: dict[str, bytes] = dict.fromkeys(tasks, b"")
    clocks = {name: _Arrivals() for name in tasks}  # when each byte not yet printed arrived
    running = len(tasks)
    while running:
        name, offset, data, times, reason = events.get()
        if data is None:
            running -= 1
            if partial[name]:
                _emit(out, name, tasks, all_tasks, partial[name], clocks[name].take(len(partial[name])), matcher)
            click.echo(f"[{name}] log stream ended: {reason or 'connection lost'}", err=True)
            continue
        clocks[name].add(offset, times)
        *lines, partial[name] = (partial[name] + data).split(b"\n")
        for line in lines:
            _emit(out, name, tasks, all_tasks, line + b"\n", clocks[name].take(len(line) + 1), matcher,
                  timestamps)
        if not all_tasks and not timestamps and matcher is None and partial[name]:
            out.write(partial[name])  # a single task shows unfinished lines (progress bars) at once
            out.flush()
            clocks[name].take(len(partial[name]))
            partial[name] = b""


class _Arrivals:
    """For a followed log: when the bytes not yet printed arrived, from the events' `times`."""

    def __init__(self) -> None:
        self._times: list[tuple[int, float]] = []  # (offset, epoch seconds), ascending
        self._next = -1  # offset of the first byte not yet taken

    def add(self, offset: int, times: list[tuple[int, float]]) -> None:
        if self._next < 0:
            self._next = offset
        self._times.extend(times or [(offset, time.time())])  # a server without times: now

    def take(self, size: int) -> float:
        """When the first of the next `size` bytes arrived; forget what they need no more."""
        at = self._next
        self._next += size
        while len(self._times) > 1 and self._times[1][0] <= at:
            self._times.pop(0)
        when = self._times[0][1] if self._times else time.time()
        while len(self._times) > 1 and self._times[1][0] <= self._next:
            self._times.pop(0)
        return when


def _emit(out: IO[bytes], name: str, tasks: list[str], all_tasks: bool, line: bytes, arrived: float,
          matcher: Any, timestamps: bool = False) -> None:
    if matcher is not None and not matcher.search(line):
        return
    stamp = format_instant(arrived).encode() + b" " if timestamps else b""
    out.write(_prefix(name, tasks, all_tasks) + stamp + line)
    out.flush()


def _download(client: Any, job_id: str, task: str, target: Path) -> None:
    link = client.json("GET", f"{job_path(job_id)}/tasks/{task}/logs/url",
                       params={"Content-Type": "application/octet-stream"})["obs_url"]
    import httpx

    partial = target.with_name(target.name + ".part")
    with httpx.stream("GET", link, headers={"accept-encoding": "identity"}, timeout=60) as response:
        response.raise_for_status()
        size = int(response.headers.get("content-length", 0)) or None
        bar: Any = click.progressbar(length=size, label=f"{task} → {target}", file=sys.stderr)
        with partial.open("wb") as f, bar:
            for piece in response.iter_bytes(1 << 20):
                f.write(piece)
                bar.update(len(piece))
    partial.replace(target)
    click.echo(f"saved {target} ({target.stat().st_size} bytes)", err=True)
