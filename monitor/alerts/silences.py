"""Silences: "I know, stop telling me" for a rule and scope, for a bounded time, stored in `silences`.

A silenced alert is still evaluated and recorded in `alerts` (with ``silenced = true``); it is just not
sent. Rule and scope match exactly or as shell-style patterns (``*``, ``model=gpt-4*``). Every silence ends:
its duration is capped by ``alerts.max_silence`` so a forgotten one cannot hide an incident for ever.

>>> s = Silence(1, "toxicity_rate", "model=m*", "known issue", None, None, None, None)  # type: ignore[arg-type]
>>> s.matches("toxicity_rate", "model=m1"), s.matches("toxicity_rate", "app=chat")
(True, False)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase

from sqlalchemy import Connection, insert, select, update

from monitor.storage.db import as_utc as _utc
from monitor.storage.schema import silences


@dataclass(frozen=True, slots=True)
class Silence:
    id: int
    rule: str
    scope: str
    reason: str
    created_by: str | None
    created_at: datetime
    ends_at: datetime
    expired_at: datetime | None

    def matches(self, rule: str, scope: str) -> bool:
        return fnmatchcase(rule, self.rule) and fnmatchcase(scope, self.scope)

    def active(self, now: datetime) -> bool:
        return self.expired_at is None and now < self.ends_at


def add_silence(conn: Connection, *, rule: str, scope: str, duration: timedelta, reason: str, now: datetime,
                max_duration: timedelta, created_by: str | None = None) -> Silence:
    """Store a silence from now for ``duration``. Raises ValueError for an empty reason or a duration that
    is not positive or longer than ``max_duration``."""
    if not reason.strip():
        raise ValueError("a silence needs a reason")
    if duration <= timedelta(0):
        raise ValueError("a silence needs a positive duration")
    if duration > max_duration:
        raise ValueError(f"a silence lasts at most {max_duration} (alerts.max_silence); asked for {duration}")
    if not rule or not scope:
        raise ValueError("a silence needs a rule and a scope (use '*' for any)")
    values = dict(rule=rule, scope=scope, reason=reason.strip(), created_by=created_by, created_at=now,
                  ends_at=now + duration)
    new_id = conn.execute(insert(silences).values(**values).returning(silences.c.id)).scalar_one()
    return Silence(id=new_id, expired_at=None, **values)  # type: ignore[arg-type]


def list_silences(conn: Connection, now: datetime, *, include_ended: bool = False) -> list[Silence]:
    """Active silences (all of them, newest first, with ``include_ended``)."""
    rows = conn.execute(select(silences).order_by(silences.c.id.desc()))
    found = [Silence(r.id, r.rule, r.scope, r.reason, r.created_by, _utc(r.created_at), _utc(r.ends_at),  # type: ignore[arg-type]
                     _utc(r.expired_at)) for r in rows]
    return found if include_ended else [s for s in found if s.active(now)]


def expire_silence(conn: Connection, silence_id: int, now: datetime) -> bool:
    """End a silence now. False when there is no such active silence."""
    t = silences.c
    result = conn.execute(update(silences).where(t.id == silence_id, t.expired_at.is_(None), t.ends_at > now)
                          .values(expired_at=now))
    return result.rowcount == 1


def matching(rule: str, scope: str, active: Sequence[Silence]) -> Silence | None:
    """The first active silence covering (rule, scope), if any."""
    return next((s for s in active if s.matches(rule, scope)), None)
