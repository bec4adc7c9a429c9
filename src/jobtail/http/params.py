"""Query parameters: parsed strictly, refused with ModelArts.2764 naming the parameter."""

from __future__ import annotations

import time
from collections.abc import Mapping

from jobtail.core.errors import InvalidInstant
from jobtail.core.timespec import parse_instant
from jobtail.http.errors import InvalidQueryParameter


def query_int(params: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    """A decimal integer in [low, high] (ASCII digits only), or `default` when absent."""
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or not low <= int(raw) <= high:
        raise InvalidQueryParameter(name)
    return int(raw)


def query_choice(params: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = params.get(name, default)
    if raw not in choices:
        raise InvalidQueryParameter(name)
    return raw


def query_bool(params: Mapping[str, str], name: str) -> bool:
    return query_choice(params, name, "false", ("true", "false", "1", "0")) in ("true", "1")


def query_instant(params: Mapping[str, str], name: str) -> float | None:
    """Epoch seconds from a duration ago (`10m`), an ISO 8601 time or epoch ms; None when absent."""
    raw = params.get(name)
    if raw is None:
        return None
    try:
        return parse_instant(raw, time.time())
    except InvalidInstant:
        raise InvalidQueryParameter(name) from None
