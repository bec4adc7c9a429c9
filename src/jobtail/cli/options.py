"""Shared CLI plumbing: flags generated from Settings fields, and one-line domain errors.

A flag, its `JOBTAIL_*` environment variable and its Settings field always share one name,
because the flags are made from the fields.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from jobtail.core.errors import JobtailError
from jobtail.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

_CLICK_TYPES: dict[Any, click.ParamType[Any]] = {
    int: click.INT, float: click.FLOAT, str: click.STRING, Path: click.Path(path_type=Path),
}


def settings_options(*names: str) -> Callable[[F], F]:
    """Add one `--flag` per named Settings field (all fields when none are named)."""
    fields = Settings.model_fields
    chosen = names or tuple(fields)

    def decorate(func: F) -> F:
        for name in reversed(chosen):
            field = fields[name]
            env = f"JOBTAIL_{name.upper()}"
            func = click.option(
                f"--{name.replace('_', '-')}",
                name,
                type=_CLICK_TYPES.get(field.annotation, click.STRING),
                default=None,
                help=f"{field.description}  [env: {env}]",
            )(func)
        return func

    return decorate


def load_settings(given: dict[str, Any]) -> Settings:
    """Settings from flags that were given, then `JOBTAIL_*` variables, then defaults."""
    try:
        return Settings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(problems) from None


def domain_errors(func: F) -> F:
    """Show domain errors as one-line CLI errors instead of tracebacks."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except JobtailError as exc:
            raise click.ClickException(exc.message) from None

    return wrapper  # type: ignore[return-value]


STORE_SETTINGS = ("data_dir", "database_url", "blob_url")
