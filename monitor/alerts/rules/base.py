"""What every alert rule shares: the `Rule` base class, the ``@register`` registry of rule kinds, and the
SQL helpers over scopes, `records` and the per-minute counters of `stream_minutes`.

The family modules (rates, latency, leaks, …) import from here, and `monitor.alerts.rules` imports them, so
the registry is complete once the package is imported and no family module imports another.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, Connection, select

from monitor.alerts.evidence import Evidence
from monitor.config import RULE_KINDS, AlertRuleConfig
from monitor.ingest.steps.aggregate import minute_of
from monitor.storage.schema import records, stream_minutes

GLOBAL = "global"
EXAMPLES = 3


class Rule:
    """A named, configured condition over the database. Subclasses set ``kind`` and implement
    ``fetch(conn, now)`` and ``decide(fetched, now)``; ``examples`` is optional."""

    kind: ClassVar[str]

    def __init__(self, name: str, config: AlertRuleConfig, *, group_id: str = "watchkeeper") -> None:
        self.name = name
        self.config = config
        self.group_id = group_id

    @property
    def severity(self) -> str:
        return self.config.severity

    @property
    def window(self) -> timedelta:
        return self.config.window

    def evaluate(self, conn: Connection, now: datetime) -> dict[str, Evidence]:
        firing = self.decide(self.fetch(conn, now), now)
        return {
            scope: evidence if evidence.examples else replace(
                evidence, examples=tuple(self.examples(conn, now, scope)))
            for scope, evidence in firing.items()
        }

    def fetch(self, conn: Connection, now: datetime) -> Any:
        raise NotImplementedError

    def decide(self, fetched: Any, now: datetime) -> dict[str, Evidence]:
        raise NotImplementedError

    def examples(self, conn: Connection, now: datetime, scope: str) -> Sequence[str]:
        return ()


RULES: dict[str, type[Rule]] = {}


def register(cls: type[Rule]) -> type[Rule]:
    """Make a rule class available to ``kind = "..."`` in monitor.toml; its kind must be one the
    configuration accepts (`monitor.config.RULE_KINDS`), and only one class may have it."""
    if cls.kind not in RULE_KINDS or cls.kind in RULES:
        raise TypeError(f"{cls.__name__}: kind {cls.kind!r} is not in RULE_KINDS or is registered twice")
    RULES[cls.kind] = cls
    return cls


# --- scopes and small helpers ----------------------------------------------------------------------------

def _scope_columns(scope: str) -> list[Any]:
    return {"global": [], "model": [records.c.model], "app": [records.c.app]}[scope]


def _scope_label(scope: str, row: Sequence[Any]) -> str:
    if scope == "global":
        return GLOBAL
    return f"{scope}={row[0] if row[0] is not None else '-'}"


def _scope_filter(scope_label: str) -> ColumnElement[bool] | None:
    """The records filter for a scope label (None for global)."""
    if scope_label == GLOBAL:
        return None
    key, _, value = scope_label.partition("=")
    column = records.c.model if key == "model" else records.c.app
    return column.is_(None) if key == "app" and value == "-" else column == value


def _sql_filter(scope_label: str) -> str:
    """The same filter as `_scope_filter`, as SQL text for the "where to look" hint."""
    if scope_label == GLOBAL:
        return ""
    key, _, value = scope_label.partition("=")
    if key == "app" and value == "-":
        return " AND app IS NULL"
    return f" AND {key} = {_quote(value)}"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _since(now: datetime, window: timedelta) -> str:
    return (now - window).strftime("%Y-%m-%d %H:%M:%S+00")


def _grouped(conn: Connection, scope: str, columns: Iterable[Any], *where: Any) -> dict[str, tuple[Any, ...]]:
    keys = _scope_columns(scope)
    stmt = select(*keys, *columns).where(*where)
    if keys:
        stmt = stmt.group_by(*keys)
    return {_scope_label(scope, row): tuple(row[len(keys):]) for row in conn.execute(stmt)}


# --- the per-minute counters (stream_minutes) -----------------------------------------------------------

_sm = stream_minutes.c
MINUTE = timedelta(minutes=1)


def _window_start(now: datetime, window: timedelta) -> datetime:
    """First minute of a window ending at ``now``: the one holding ``now - window``."""
    return minute_of(now - window)


def _minute_filter(scope_label: str) -> list[ColumnElement[bool]]:
    """The `stream_minutes` filter for a scope label (app ``-`` is stored as '')."""
    if scope_label == GLOBAL:
        return []
    key, _, value = scope_label.partition("=")
    if key == "model":
        return [_sm.model == value]
    return [_sm.app == ("" if value == "-" else value)]


def _minute_sums(conn: Connection, scope: str, columns: Iterable[Any], *where: Any) -> dict[str, tuple[Any, ...]]:
    """``columns`` (aggregates over `stream_minutes`) per scope label, over the rows matching ``where``."""
    keys = {"global": [], "model": [_sm.model], "app": [_sm.app]}[scope]
    stmt = select(*keys, *columns).where(*where)
    if keys:
        stmt = stmt.group_by(*keys)
    out = {}
    for row in conn.execute(stmt):
        label = GLOBAL if not keys else f"{scope}={row[0] if row[0] not in (None, '') else '-'}"
        out[label] = tuple(row[len(keys):])
    return out


def _ids_in_minutes(conn: Connection, scope: str, minutes: Iterable[datetime], *where: Any,
                    order: Any = None) -> list[tuple[Any, str]]:
    """``(order value, id)`` of up to `EXAMPLES` records per minute of ``minutes`` that match ``where``: each
    query reads one minute of records through the ``ts`` index, so the work is bounded by the traffic of
    a few minutes whatever the window."""
    scoped = _scope_filter(scope)
    order = records.c.ts if order is None else order
    found: list[tuple[Any, str]] = []
    for minute in minutes:
        stmt = (select(order, records.c.id)
                .where(records.c.ts >= minute, records.c.ts < minute + MINUTE, *where,
                       *([scoped] if scoped is not None else []))
                .order_by(order.desc()).limit(EXAMPLES))
        found += [(row[0], row[1]) for row in conn.execute(stmt)]
    return found


def _recent_ids(conn: Connection, scope: str, start: datetime, counter: str, *where: Any) -> list[str]:
    """The newest `EXAMPLES` records matching ``where`` since ``start``, looked for only in the newest minutes
    whose ``counter`` says they hold some."""
    minutes = conn.scalars(
        select(_sm.minute).where(_sm.minute >= start, _sm[counter] > 0, *_minute_filter(scope))
        .group_by(_sm.minute).order_by(_sm.minute.desc()).limit(EXAMPLES))
    found: list[str] = []
    for minute in minutes:
        found += [rid for _, rid in _ids_in_minutes(conn, scope, [minute], *where)]
        if len(found) >= EXAMPLES:
            break
    return found[:EXAMPLES]


def _exceeds(value: float, floor: float, base: float | None, factor: float, spike: bool) -> bool:
    """Above the absolute floor, and — for spike rules — above factor × baseline when a baseline exists.
    A spike rule with no usable baseline fires on the floor alone, and only when the floor is set."""
    if value <= floor:
        return False
    if not spike:
        return True
    if base is None:
        return floor > 0
    return value > base * factor
