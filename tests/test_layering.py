"""core/ stays a storage engine: it never imports the web framework, auth, CLI or backend libraries,
nor any other jobtail layer (its backends' interfaces live in core). The layering contracts of
every package are import-linter's (`tests/test_static.py`); this is the quick check of the one
that matters most, with a test that its checker sees imports at all."""

from __future__ import annotations

import ast
from pathlib import Path

import jobtail

FORBIDDEN = {
    "starlette", "fastapi", "uvicorn", "granian", "click", "typer", "sqlalchemy", "psycopg", "boto3",
    "botocore", "obstore", "pydantic", "pydantic_settings", "httpx", "orjson",
    "jobtail.http", "jobtail.cli", "jobtail.auth", "jobtail.runner", "jobtail.settings", "jobtail.wiring",
    "jobtail.meta", "jobtail.blobs", "jobtail.services", "jobtail.ship", "jobtail.client",
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_imports_nothing_outside_its_layer() -> None:
    core = Path(jobtail.__file__).parent / "core"
    modules = sorted(core.rglob("*.py"))
    assert len(modules) >= 5
    for module in modules:
        for name in imported_modules(module):
            assert not any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN), f"{module.name} imports {name}"


def test_the_checker_sees_imports() -> None:
    sample = Path(__file__)
    assert "jobtail" in imported_modules(sample)
