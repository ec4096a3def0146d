"""Drift boosts: which streams drifted recently, as the sampler needs to know, from the `drift_events` table.

Drift is detected by one fold job on one daemon (`monitor.jobs.drift`), not in the batches a pipeline sees,
so every pipeline learns the events from the table: all events on start (so a restart forgets nothing),
then the new ones every ``poll_s`` seconds. An event boosts the records of its stream whose event time lies
in ``[detected_at, detected_at + boost_s]`` — whichever partition or daemon they come through.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from monitor.storage.db import as_utc
from monitor.storage.schema import drift_events

MAX_EVENTS = 10_000
"""Most recent events read on start: beyond that many changes in ``boost_s`` boosting says nothing."""
REREAD = 100
"""Ids re-read below the highest seen: on Postgres a lower id can commit after a higher one."""


@dataclass(slots=True)
class DriftBoost:
    """One drift event as the sampler uses it: its stream's labels and the event-time interval it covers."""

    match: dict[str, str]
    start: datetime
    end: datetime

    def matches(self, model: str, app: str | None) -> bool:
        """Whether records of (model, app) belong to the drifting stream (``app=-``: records without an app).

        >>> DriftBoost(parse_stream("model=m1,app=-"), datetime(2026, 1, 1), datetime(2026, 1, 2)).matches("m1", None)
        True
        """
        for key, value in self.match.items():
            have = (model if key == "model" else app if key == "app" else None) or ""
            if value != "*" and have != value and not (key == "app" and value == "-" and not have):
                return False
        return True


def parse_stream(stream: str) -> dict[str, str]:
    """``model=m1,app=*`` -> {"model": "m1", "app": "*"}; ``*`` -> {} (all traffic).

    >>> parse_stream("model=m1,app=*"), parse_stream("*")
    ({'model': 'm1', 'app': '*'}, {})
    """
    out = {}
    for part in stream.split(","):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


class DriftBoosts:
    """The drift boosts in force, refreshed from ``engine`` at most every ``poll_s`` seconds (``clock``:
    monotonic seconds). Without an engine only `learn` adds boosts."""

    def __init__(self, boost_s: float, engine: Engine | None = None, poll_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.boost_s, self.engine, self.poll_s, self.clock = boost_s, engine, poll_s, clock
        self.boosts: list[DriftBoost] = []
        self._seen: set[int] = set()
        self._last_id = 0
        self._polled: float | None = None

    def __bool__(self) -> bool:
        return bool(self.boosts)

    def refresh(self) -> None:
        """Read events written since the last read (all on the first), if ``poll_s`` has passed."""
        if self.engine is None:
            return
        now = self.clock()
        if self._polled is not None and now - self._polled < self.poll_s:
            return
        self._polled = now
        t = drift_events.c
        query = select(t.id, t.stream, t.detected_at).order_by(t.id.desc()).limit(MAX_EVENTS)
        if self._last_id:
            query = query.where(t.id > self._last_id - REREAD)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        fresh = [r for r in rows if r.id not in self._seen]
        for r in fresh:
            self._seen.add(r.id)
            self._last_id = max(self._last_id, r.id)
        self.learn({"stream": r.stream, "detected_at": r.detected_at} for r in fresh)

    def learn(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Add the boosts of drift events (rows with ``stream`` and ``detected_at``)."""
        for row in rows:
            start = as_utc(row["detected_at"])
            self.boosts.append(DriftBoost(parse_stream(str(row.get("stream", "*"))), start,
                                          start + timedelta(seconds=self.boost_s)))

    def intervals(self, model: str, app: str | None) -> list[tuple[float, float]]:
        """Epoch-second intervals in which records of (model, app) are boosted."""
        return [(b.start.timestamp(), b.end.timestamp()) for b in self.boosts if b.matches(model, app)]

    def forget_before(self, oldest: float) -> None:
        """Drop boosts that ended before ``oldest`` (epoch seconds), and ids too old to be read again."""
        self.boosts = [b for b in self.boosts if b.end.timestamp() >= oldest]
        if len(self._seen) > 2 * MAX_EVENTS:
            self._seen = {i for i in self._seen if i > self._last_id - REREAD}


__all__ = ["DriftBoost", "DriftBoosts", "parse_stream"]
