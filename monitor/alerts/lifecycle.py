"""Alert lifecycle in the `alerts` table: firing → resolved, one row per episode, deduplicated by fingerprint.

The fingerprint is rule + scope. While an alert fires, each evaluation that still finds its condition
updates the same row (``count``, ``last_seen``, the latest evidence) instead of adding one; when the
condition has been absent for ``resolve_after`` the row becomes ``resolved``. If it fires again later, that
is a new episode and a new row (a partial unique index keeps at most one firing row per fingerprint).

`diff` is pure: open alerts + what the rules found now → new / repeat / resolved. `apply` writes it.

>>> from datetime import datetime, timedelta, UTC
>>> from monitor.alerts.rules import Evidence
>>> ev = Evidence("3 secrets", 3, 0, 900, 3)
>>> d = diff([], [Candidate("secret_in_response", "model=m1", "critical", ev)], decided={"secret_in_response"},
...          now=datetime(2026, 1, 1, tzinfo=UTC), resolve_after=timedelta(minutes=1))
>>> [c.fingerprint for c in d.new], d.repeat, d.resolved
(['secret_in_response@model=m1'], [], [])
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, insert, select, update

from monitor.alerts.evidence import Evidence
from monitor.storage.db import as_utc as _utc
from monitor.storage.schema import alerts

FIRING = "firing"
RESOLVED = "resolved"
SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


def fingerprint(rule: str, scope: str) -> str:
    return f"{rule}@{scope}"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A (rule, scope) the rules find firing now, with its evidence."""

    rule: str
    scope: str
    severity: str
    evidence: Evidence

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.rule, self.scope)


@dataclass(slots=True)
class Alert:
    """One row of `alerts`."""

    id: int
    fingerprint: str
    rule: str
    severity: str
    scope: str
    status: str
    summary: str
    evidence: Evidence
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None
    count: int
    last_notified_at: datetime | None
    silenced: bool
    inhibited: bool

    @property
    def announced(self) -> bool:
        return self.last_notified_at is not None

    @property
    def awaits_resolution_notice(self) -> bool:
        """Resolved after its firing was announced, and the resolution not yet announced."""
        return (self.status == RESOLVED and self.last_notified_at is not None
                and self.resolved_at is not None and self.last_notified_at < self.resolved_at)

    @classmethod
    def from_row(cls, row: Any) -> Alert:
        m = row._mapping
        return cls(
            id=m["id"], fingerprint=m["fingerprint"], rule=m["rule"], severity=m["severity"],
            scope=m["scope"], status=m["status"], summary=m["summary"],
            evidence=Evidence.from_json(m["details"] or {"summary": m["summary"], "value": 0, "threshold": 0,
                                                          "window_s": 0, "sample_size": 0}),
            first_seen=_utc(m["first_seen"]), last_seen=_utc(m["last_seen"]),  # type: ignore[arg-type]
            resolved_at=_utc(m["resolved_at"]), count=m["count"],
            last_notified_at=_utc(m["last_notified_at"]), silenced=m["silenced"], inhibited=m["inhibited"],
        )


@dataclass(slots=True)
class Diff:
    new: list[Candidate] = field(default_factory=list)
    repeat: list[tuple[Alert, Candidate]] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)


def diff(open_alerts: Iterable[Alert], candidates: Iterable[Candidate], *, decided: Collection[str],
         now: datetime, resolve_after: timedelta, undecided: Collection[str] = ()) -> Diff:
    """Compare the firing alerts with what the rules found now.

    ``decided``: rules that evaluated successfully. ``undecided``: configured rules that failed this time;
    their alerts are left as they are (a broken query must not resolve a real incident). Alerts of rules in
    neither set (removed or disabled in config) resolve now.
    """
    by_fp = {c.fingerprint: c for c in candidates}
    out = Diff()
    open_by_fp = {}
    for alert in open_alerts:
        open_by_fp[alert.fingerprint] = alert
        cand = by_fp.get(alert.fingerprint)
        if cand is not None:
            out.repeat.append((alert, cand))
        elif alert.rule in undecided:
            continue
        elif alert.rule not in decided or now - alert.last_seen >= resolve_after:
            out.resolved.append(alert)
    out.new = [c for fp, c in by_fp.items() if fp not in open_by_fp]
    return out


def load_open(conn: Connection) -> list[Alert]:
    """Firing alerts, plus resolved ones whose resolution is still to be announced."""
    t = alerts.c
    stmt = select(alerts).where(
        (t.status == FIRING)
        | and_(t.status == RESOLVED, t.last_notified_at.is_not(None), t.last_notified_at < t.resolved_at)
    ).order_by(t.id)
    return [Alert.from_row(row) for row in conn.execute(stmt)]


def load_latest(conn: Connection, fingerprints: Sequence[str]) -> list[Alert]:
    """The newest row of each fingerprint (for re-rendering a message that named them)."""
    if not fingerprints:
        return []
    rows = conn.execute(select(alerts).where(alerts.c.fingerprint.in_(fingerprints)).order_by(alerts.c.id))
    latest = {a.fingerprint: a for a in map(Alert.from_row, rows)}
    return [latest[fp] for fp in fingerprints if fp in latest]


def apply(conn: Connection, d: Diff, now: datetime) -> None:
    """Write a diff: insert new episodes, refresh repeats, resolve the rest."""
    for cand in d.new:
        conn.execute(insert(alerts).values(
            fingerprint=cand.fingerprint, rule=cand.rule, severity=cand.severity, scope=cand.scope,
            status=FIRING, summary=cand.evidence.summary, details=cand.evidence.to_json(),
            first_seen=now, last_seen=now, count=1, silenced=False, inhibited=False,
        ))
    for alert, cand in d.repeat:
        conn.execute(update(alerts).where(alerts.c.id == alert.id).values(
            severity=cand.severity, summary=cand.evidence.summary, details=cand.evidence.to_json(),
            last_seen=now, count=alerts.c.count + 1,
        ))
    for alert in d.resolved:
        conn.execute(update(alerts).where(alerts.c.id == alert.id, alerts.c.status == FIRING)
                     .values(status=RESOLVED, resolved_at=now))


def set_flags(conn: Connection, alert: Alert, *, silenced: bool, inhibited: bool) -> None:
    if (alert.silenced, alert.inhibited) != (silenced, inhibited):
        conn.execute(update(alerts).where(alerts.c.id == alert.id).values(silenced=silenced, inhibited=inhibited))
    alert.silenced, alert.inhibited = silenced, inhibited


def mark_notified(conn: Connection, alert_ids: Iterable[int], now: datetime) -> None:
    ids = list(alert_ids)
    if ids:
        conn.execute(update(alerts).where(alerts.c.id.in_(ids)).values(last_notified_at=now))
