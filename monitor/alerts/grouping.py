"""Grouping and re-notification: which alerts go out now, and together in which message.

Alerts of one scope that start firing within ``group_wait`` of each other go out as one message: the first
new alert of a scope waits ``group_wait`` for its companions (a drift, a toxicity spike and a refusal spike
from the same bad deploy are one page, not three). A still-firing alert is announced again every
``repeat_interval``. Resolutions of announced alerts go out at once, grouped by scope. Silenced and
inhibited alerts are never in a firing message; an alert whose silence or inhibition ends while it still
fires is announced then.

>>> from types import SimpleNamespace as A
>>> from datetime import datetime, timedelta, UTC
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> new = A(scope="model=m1", status="firing", silenced=False, inhibited=False, last_notified_at=None,
...         first_seen=t0, severity="warning", awaits_resolution_notice=False)
>>> plan([new], t0 + timedelta(seconds=3), group_wait=timedelta(seconds=10), repeat_interval=timedelta(hours=4))
[]
>>> [n.kind for n in plan([new], t0 + timedelta(seconds=10), group_wait=timedelta(seconds=10),
...                       repeat_interval=timedelta(hours=4))]
['firing']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from monitor.alerts.severity import RANK, most_severe

Kind = Literal["firing", "reminder", "resolved"]


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to send: its kind, the scope it groups, and the alerts in it (most severe first)."""

    kind: Kind
    scope: str
    alerts: tuple[Any, ...]

    @property
    def severity(self) -> str:
        return most_severe(a.severity for a in self.alerts)


def _ordered(alerts: list[Any]) -> tuple[Any, ...]:
    return tuple(sorted(alerts, key=lambda a: (RANK[a.severity], a.first_seen)))


def plan(alerts: Sequence[Any], now: datetime, *, group_wait: timedelta,
         repeat_interval: timedelta) -> list[Notification]:
    """The notifications due at ``now`` for these alerts (firing ones and resolved ones awaiting notice)."""
    scopes: dict[str, list[Any]] = {}
    for alert in alerts:
        scopes.setdefault(alert.scope, []).append(alert)
    out = []
    for scope in sorted(scopes):
        group = scopes[scope]
        resolved = [a for a in group if a.awaits_resolution_notice]
        if resolved:
            out.append(Notification("resolved", scope, _ordered(resolved)))
        sendable = [a for a in group if a.status == "firing" and not a.silenced and not a.inhibited]
        new = [a for a in sendable if a.last_notified_at is None]
        if new and min(a.first_seen for a in new) <= now - group_wait:
            out.append(Notification("firing", scope, _ordered(new)))
        due = [a for a in sendable if a.last_notified_at is not None and a.last_notified_at <= now - repeat_interval]
        if due:
            out.append(Notification("reminder", scope, _ordered(due)))
    return out
