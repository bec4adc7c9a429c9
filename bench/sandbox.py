"""Benchmark what the bubblewrap sandbox adds to starting a task, against the unsandboxed shim.

    .venv/bin/python bench/sandbox.py [--rounds 40]

Each round starts the same task three ways, in rotating order, through the executor's own
`TaskProcess.spawn` (the shim, `/bin/sh -c 'echo ready'`, output into a pipe): in the sandbox
(`executor_isolation=bwrap`), without it (`none`), and, as the floor, `/bin/sh -c` alone by
`subprocess.Popen`. It times spawn → the first output byte (the task runs) and spawn → its exit
as the executor sees it (`poll()`), and reports medians and the median of the paired differences
sandbox − none: what the sandbox costs per task start.
"""

from __future__ import annotations

import argparse
import os
import select
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from jobtail.runner.process import TaskProcess
from jobtail.runner.sandbox import Sandbox
from jobtail.settings import Settings

COMMAND = "echo ready"


def first_byte_and_exit(start: Callable[[int], Callable[[], bool]]) -> tuple[float, float]:
    """(seconds to the first output byte, seconds to the exit) of one task started by `start`,
    which gets the pipe's write end and returns a `done()` poll."""
    read, write = os.pipe()
    began = time.perf_counter()
    done = start(write)
    os.close(write)
    select.select([read], [], [], 30)
    first = time.perf_counter() - began
    while not done():
        time.sleep(0.0005)
    ended = time.perf_counter() - began
    os.close(read)
    return first, ended


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobtail-bench-sandbox-") as temp:
        sandbox = Sandbox.for_settings(Settings(data_dir=Path(temp) / "data"))
        sandbox.check()
        places = sandbox.places("bench", "job", own_dir=True)
        job_dir = places.own_dir
        assert job_dir is not None
        env = dict(os.environ)

        def sandboxed(fd: int) -> Callable[[], bool]:
            task = TaskProcess.spawn(COMMAND, env=env, cwd=str(job_dir), output_fd=fd, grace_seconds=1,
                                     sandbox=sandbox, places=places)
            return lambda: task.poll() is not None

        def plain(fd: int) -> Callable[[], bool]:
            task = TaskProcess.spawn(COMMAND, env=env, cwd=temp, output_fd=fd, grace_seconds=1)
            return lambda: task.poll() is not None

        def shell(fd: int) -> Callable[[], bool]:
            popen = subprocess.Popen(["/bin/sh", "-c", COMMAND], stdout=fd, stderr=fd, cwd=temp)
            return lambda: popen.poll() is not None

        ways = {"bwrap": sandboxed, "none": plain, "sh": shell}
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
        names = list(ways)
        for round_ in range(args.rounds + 3):
            order = names[round_ % 3:] + names[:round_ % 3]
            for name in order:
                measured = first_byte_and_exit(ways[name])
                if round_ >= 3:  # warm-up rounds are not counted
                    times[name].append(measured)
        sandbox.release("bench", "job", deleted=True)
    print(f"task start, {args.rounds} rounds (ms; medians)   first byte   exit")
    for name, label in (("sh", "/bin/sh -c alone (floor)"), ("none", "shim, --executor-isolation none"),
                        ("bwrap", "shim in bwrap (the default)")):
        first = statistics.median(t[0] for t in times[name]) * 1000
        ended = statistics.median(t[1] for t in times[name]) * 1000
        print(f"  {label:36s} {first:8.1f}   {ended:6.1f}")
    pairs = list(zip(times["bwrap"], times["none"], strict=True))
    first = statistics.median(b[0] - n[0] for b, n in pairs) * 1000
    ended = statistics.median(b[1] - n[1] for b, n in pairs) * 1000
    print(f"  sandbox overhead (paired, bwrap - none) {first:6.1f}   {ended:6.1f}")


if __name__ == "__main__":
    main()
