"""Points in time as users write them: `10m` ago, an ISO 8601 timestamp, or epoch milliseconds."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from jobtail.core.errors import InvalidInstant

_DURATION = re.compile(r"(\d{1,9})(ms|s|m|h|d)")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_instant(text: str, now: float) -> float:
    """Epoch seconds for `text`: a duration before `now` (`90s`, `10m`, `2h`, `1d`), an ISO 8601
    timestamp (naive means UTC) or epoch milliseconds. Raises InvalidInstant."""
    if m := _DURATION.fullmatch(text):
        return now - int(m.group(1)) * _SECONDS[m.group(2)]
    if text.isascii() and text.isdigit() and len(text) <= 16:
        return int(text) / 1000
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInstant(text) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def format_instant(at: float) -> str:
    """RFC 3339 UTC with milliseconds, as `timestamps=true` prefixes lines."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
