"""Drift rule: fires while the pipeline's drift detectors recorded events in a scope within the window.

Its own module because it reads `drift_events` (keyed by drift stream, mapped to scopes by `stream_scope`)
rather than records or counters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Connection, select

from monitor.alerts.evidence import Evidence
from monitor.alerts.rules.base import EXAMPLES, GLOBAL, Rule, _quote, _since, register
from monitor.durations import human_duration
from monitor.storage.schema import drift_events


def stream_scope(stream: str, scope: str) -> str:
    """Map a drift stream (``model=m1,app=*`` or ``*``) to a scope label of the given kind."""
    parts = dict(part.split("=", 1) for part in stream.split(",") if "=" in part)
    value = parts.get(scope)
    if scope == "global" or value in (None, "*"):
        return GLOBAL
    return f"{scope}={value}"


def describe_change(stream: str, signal: str, before: Any, after: Any, details: Any = None) -> str:
    """One line a human reads: where (model, app), what (signal), before → after, and records since.

    >>> describe_change("model=m1", "response_chars", {"mean": 1000.0}, {"mean": 1500.0, "n": 262},
    ...                 {"records_since": 262, "direction": "up"})
    'response_chars on model m1 (all apps): 1,000 → 1,500 (+50%), 262 records since the change'
    >>> describe_change("model=m1,app=chat", "toxic", {"rate": 0.01}, {"rate": 0.05}, {})
    'toxic on model m1, app chat: 1.00% → 5.00%'
    >>> describe_change("model=m1", "prompt_topic", {"shares": {}}, {"shares": {}},
    ...                 {"moved": [["support", 0.85, 0.6], ["legal", 0.0, 0.2]]})
    'prompt_topic on model m1 (all apps): support 85% → 60%, legal 0% → 20%'
    """
    parts = dict(part.split("=", 1) for part in stream.split(",") if "=" in part)
    model, app = parts.get("model"), parts.get("app")
    if model and app:
        where = f"model {model}, app {app}"
    elif model:
        where = f"model {model} (all apps)"
    elif app:
        where = f"app {app} (all models)"
    else:
        where = "all traffic"
    text = f"{signal} on {where}"
    b, a = _numbers(before) or {}, _numbers(after) or {}
    if "rate" in b and "rate" in a:
        text += f": {b['rate']:.2%} → {a['rate']:.2%}"
    elif "mean" in b and "mean" in a:
        change = f" ({a['mean'] / b['mean'] - 1:+.0%})" if b["mean"] else ""
        text += f": {b['mean']:,.0f} → {a['mean']:,.0f}{change}"
    moved = details.get("moved") if isinstance(details, Mapping) else None
    if isinstance(moved, list) and moved:  # a topic mix: the subjects whose share moved most
        text += ": " + ", ".join(f"{name} {was:.0%} → {now:.0%}" for name, was, now in moved)
    since = details.get("records_since") if isinstance(details, Mapping) else None
    if isinstance(since, int | float) and since:
        text += f", {since:,.0f} records since the change"
    return text


def _too_small(before: Any, after: Any, min_change: float) -> bool:
    """Whether a continuous signal's typical value moved by less than ``min_change`` (a fraction of before).
    Rates and topic mixes are judged by their detectors alone.

    >>> _too_small({"mean": 45.0}, {"mean": 46.0}, 0.05), _too_small({"mean": 45.0}, {"mean": 60.0}, 0.05)
    (True, False)
    """
    b, a = _numbers(before) or {}, _numbers(after) or {}
    if not min_change or not b.get("mean") or "mean" not in a:
        return False
    return abs(a["mean"] / b["mean"] - 1) < min_change


def _numbers(stats: Any) -> dict[str, float] | None:
    if not isinstance(stats, Mapping):
        return None
    return {k: float(v) for k, v in stats.items() if isinstance(v, int | float) and not isinstance(v, bool)}


@register
class Drift(Rule):
    """Fires for a scope while drift events were detected in it within the window. ``fetch`` gives rows
    ``(stream, signal, detector, record_id, before, after, details)``, newest first. The summary leads with
    the latest change: which model and app, the signal, before → after, and how many records since."""

    kind = "drift"
    max_rows: ClassVar[int] = 1000

    def fetch(self, conn: Connection, now: datetime) -> list[tuple[Any, ...]]:
        t = drift_events.c
        stmt = (select(t.stream, t.signal, t.detector, t.record_id, t.before, t.after, t.details)
                .where(t.created_at > now - self.window).order_by(t.id.desc()).limit(self.max_rows))
        return [tuple(row) for row in conn.execute(stmt)]

    def decide(self, fetched: Sequence[tuple[Any, ...]], now: datetime | None) -> dict[str, Evidence]:
        by_scope: dict[str, list[tuple[Any, ...]]] = {}
        for row in fetched:
            if _too_small(row[4], row[5], self.config.min_change):
                continue
            by_scope.setdefault(stream_scope(row[0], self.config.scope), []).append(row)
        cfg, firing = self.config, {}
        for scope, events in by_scope.items():
            if len(events) <= cfg.threshold:
                continue
            stream, signal, detector, _, before, after, *rest = events[0]
            signals = sorted({e[1] for e in events})
            since = _since(now, cfg.window) if now else "<window start>"
            firing[scope] = Evidence(
                summary=(f"{describe_change(stream, signal, before, after, rest[0] if rest else None)} "
                         f"({detector}); {len(events)} drift event(s) in the last "
                         f"{human_duration(cfg.window.total_seconds())} on {', '.join(signals)}"),
                value=len(events), threshold=cfg.threshold, window_s=cfg.window.total_seconds(),
                sample_size=len(events), before=_numbers(before), after=_numbers(after),
                examples=tuple(dict.fromkeys(e[3] for e in events if e[3]))[:EXAMPLES],
                look=(f"SELECT * FROM drift_events WHERE created_at > '{since}' "
                      f"AND stream = {_quote(stream)} ORDER BY id DESC;"),
            )
        return firing
