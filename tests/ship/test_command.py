"""`jobtail ship -- CMD`: a real shipper process running a real command."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from support.serve import IngestServer, clean_env

from jobtail.core.types import TaskRef


def ship(ingest: IngestServer, *command: str, quiet: bool = True) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "jobtail", "ship", "--job", ingest.job_id, "--task", "worker-1",
            "--credentials", str(ingest.credentials_file), "--batch-seconds", "0.05", *(["-q"] if quiet else []),
            "--", *command]
    return subprocess.Popen(argv, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_output_is_shipped_in_order_and_the_exit_code_passes_through(ingest: IngestServer) -> None:
    script = ("import sys\n"
              "for i in range(3):\n"
              "    print(f'out {i}'); print(f'err {i}', file=sys.stderr)\n"
              "sys.stdout.write('no newline at the end')\n"
              "sys.exit(3)\n")
    proc = ship(ingest, sys.executable, "-c", script, quiet=False)
    out, err = proc.communicate(timeout=60)
    expected = b"out 0\nerr 0\nout 1\nerr 1\nout 2\nerr 2\nno newline at the end"
    assert proc.returncode == 3, err
    assert out == expected  # also printed, unless --quiet
    assert ingest.log("worker-1") == expected
    again = ship(ingest, sys.executable, "-c", "print('second run')")
    again.communicate(timeout=60)
    assert again.returncode == 0
    assert ingest.log("worker-1") == expected + b"second run\n"  # appended after what was there


def test_signals_reach_the_command_and_its_last_words_are_shipped(ingest: IngestServer) -> None:
    script = ("import signal, sys, time\n"
              "def bye(*_):\n"
              "    print('got SIGTERM, saving a checkpoint'); sys.exit(7)\n"
              "signal.signal(signal.SIGTERM, bye)\n"
              "print('training', flush=True)\n"
              "time.sleep(60)\n")
    proc = ship(ingest, sys.executable, "-c", script)
    deadline = time.monotonic() + 30
    while not _started(ingest):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 7
    assert ingest.log("worker-1") == b"training\ngot SIGTERM, saving a checkpoint\n"


def _started(ingest: IngestServer) -> bool:
    return ingest.store.state(TaskRef(ingest.project, ingest.job_id, "worker-1")).end_offset > 0


def test_a_missing_command_is_127_and_a_refused_credential_is_reported(ingest: IngestServer) -> None:
    missing = ship(ingest, "/nonexistent/train")
    _, err = missing.communicate(timeout=60)
    assert missing.returncode == 127 and b"/nonexistent/train" in err
    viewer = ingest.key("viewer")
    path = ingest.credentials_file.with_name("viewer.json")
    path.write_text(ingest.credentials_file.read_text().replace(ingest.credentials.access_key, viewer.access_key)
                    .replace(ingest.credentials.secret_key, viewer.secret_key))
    argv = [sys.executable, "-m", "jobtail", "ship", "--job", ingest.job_id, "--credentials", str(path), "-q", "--",
            sys.executable, "-c", "print('lost')"]
    done = subprocess.run(argv, env=clean_env(), capture_output=True, timeout=60)
    assert done.returncode == 1  # the command succeeded, but its output could not be shipped
    assert b"ModelArts.0108" in done.stderr
