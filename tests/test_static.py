"""The static checks the test command runs: mypy --strict (with the pydantic plugin), ruff, and
the layering contracts between jobtail's packages (import-linter; see pyproject.toml).

Each runs its tool as CI would, over the repository, and fails with the tool's findings."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS = Path(sys.executable).parent


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def test_mypy_strict_finds_nothing_in_src() -> None:
    result = run(sys.executable, "-m", "mypy")  # files, strict and plugins: [tool.mypy] in pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_ruff_finds_nothing() -> None:
    result = run(sys.executable, "-m", "ruff", "check", "--no-cache", "src", "tests", "bench", "examples")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_layering_contract_is_kept() -> None:
    lint_imports = shutil.which("lint-imports", path=str(TOOLS))
    assert lint_imports is not None, "import-linter is not installed (the test extra)"
    result = run(lint_imports, "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 kept, 0 broken" in result.stdout, result.stdout
