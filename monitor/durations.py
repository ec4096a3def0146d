"""One way to write (and read back) a duration, everywhere: configuration values, command-line options and look-backs.

``90s``, ``15m``, ``1h``, ``1h30m``, ``7d``, ``2w`` (units s, m, h, d, w, combinable largest first or in any
order). Configuration additionally accepts a bare number of seconds and ISO 8601 (``PT1H``), which pydantic
parses; the command line accepts an ISO 8601 *time* where it asks for a starting point (``--since``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> timedelta:
    """``2h``, ``30m``, ``1h30m``, ``1d``, ``90s`` → timedelta. Raises ValueError otherwise.

    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    >>> parse_duration("7d") == timedelta(days=7)
    True
    """
    text = text.strip().lower()
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 30m, 2h, 1h30m, 7d)")
    try:
        return timedelta(seconds=sum(float(n) * UNITS_S[u] for n, u in parts))
    except OverflowError:  # "99999999999d": a ValueError like any other bad duration, not a traceback
        raise ValueError(f"too long a duration: {text!r}") from None


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A starting point: a duration ago (``7d``, ``12h``, ``30m``) or an ISO 8601 time (UTC when it has no
    offset). Raises ValueError otherwise.

    >>> parse_since("2h", now=datetime(2026, 1, 1, 12, tzinfo=UTC)).hour
    10
    >>> parse_since("2026-01-01T00:00:00").tzinfo
    datetime.timezone.utc
    """
    try:
        return (now or datetime.now(UTC)) - parse_duration(text)
    except OverflowError:  # "5000000d" ago is before year 1
        raise ValueError(f"{text!r} reaches back before year 1") from None
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r}: use 7d, 12h, 30m or an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def human_duration(seconds: float) -> str:
    """The short form people read in alerts and listings, the inverse of `parse_duration`.

    >>> human_duration(600), human_duration(5400), human_duration(42)
    ('10m', '1h30m', '42s')
    """
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    parts = []
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)
