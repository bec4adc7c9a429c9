"""The README's first command: `scripts/serve` sets up and runs `jobtail serve`, passing arguments on."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_serve_script_passes_its_arguments_to_jobtail_serve() -> None:
    # --help: the setup runs (reinstalling only if pyproject.toml changed) and serve answers, without
    # binding a port. The script once handed its own arguments to the setup as pip extras.
    done = subprocess.run(["bash", "scripts/serve", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Usage: jobtail serve" in done.stdout
    assert "--data-dir" in done.stdout
