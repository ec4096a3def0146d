"""Leak rules: any secret or personal data in a model response — `LeakRule` and its kinds.

They count findings of one detector in the response (not the prompt), exact to the record at the window's
start, and usually fire on a single record; a new leak kind is a few class attributes here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import ClassVar

from sqlalchemy import Connection, func, select

from monitor.alerts.evidence import Evidence
from monitor.alerts.rules.base import (
    EXAMPLES,
    MINUTE,
    Rule,
    _minute_filter,
    _scope_columns,
    _scope_filter,
    _scope_label,
    _since,
    _sm,
    _sql_filter,
    register,
)
from monitor.durations import human_duration
from monitor.ingest.steps.aggregate import in_response, minute_of
from monitor.storage.db import as_utc as _utc
from monitor.storage.schema import detections, records

_EXAMPLE_CANDIDATES = 20 * EXAMPLES
"""Newest findings of a minute read when looking for example leaks (those only in the prompt are skipped)."""


class LeakRule(Rule):
    """Fires when more than ``threshold`` (default 0: any) records in the window have a ``detector`` finding
    in the response. ``fetch`` gives ``{scope: records}``.

    The whole minutes of the window are summed from `stream_minutes` (``counter``), which the pipeline fills
    in the transaction that stores the detections; only the minute the window starts in is counted from
    `detections` itself, so an evaluation reads at most one minute of findings whatever the window and the
    traffic, and the window is exact to the record. Example records are looked up only for a firing scope."""

    detector: ClassVar[str]
    counter: ClassVar[str]
    what: ClassVar[str]

    def fetch(self, conn: Connection, now: datetime) -> dict[str, dict[str, int]]:
        """``{scope: {app: records}}``: the count per app too, so that an alert can say where the leak is
        (a leak in one app's responses, across every model, is one app's problem)."""
        since = now - self.window
        head = minute_of(since)
        scope = self.config.scope
        counts: dict[str, dict[str, int]] = {}

        def add(label: str, app: str | None, n: int) -> None:
            by_app = counts.setdefault(label, {})
            by_app[app or "-"] = by_app.get(app or "-", 0) + n

        model_key = [_sm.model] if scope == "model" else []
        whole = (select(*model_key, _sm.app, func.sum(_sm[self.counter])).where(_sm.minute > head)
                 .group_by(*model_key, _sm.app))
        for row in conn.execute(whole):
            if row[-1]:
                label = _scope_label(scope, [row[-2] or None] if scope == "app" else row)
                add(label, row[-2], int(row[-1]))
        partial = (select(*_scope_columns(scope), records.c.app, detections.c.details)
                   .select_from(detections.join(records, records.c.id == detections.c.record_id))
                   .where(records.c.ts > since, records.c.ts < head + MINUTE,
                          detections.c.detector == self.detector, detections.c.flagged.is_(True)))
        for row in conn.execute(partial):
            if in_response(row[-1]):
                add(_scope_label(scope, row), row[-2], 1)
        return counts

    def decide(self, fetched: Mapping[str, Mapping[str, int]], now: datetime | None) -> dict[str, Evidence]:
        cfg, firing = self.config, {}
        for scope, by_app in fetched.items():
            count = sum(by_app.values())
            if count <= cfg.threshold:
                continue
            window = human_duration(cfg.window.total_seconds())
            since = _since(now, cfg.window) if now else "<window start>"
            where = ""
            if not scope.startswith("app="):
                apps = sorted(by_app.items(), key=lambda kv: (-kv[1], kv[0]))
                where = (f", all in app {apps[0][0]}" if len(apps) == 1 else
                         ", in apps " + ", ".join(f"{app} ({n})" for app, n in apps[:5]))
            firing[scope] = Evidence(
                summary=f"{count} response(s) with {self.what} in the last {window}{where}",
                value=count, threshold=cfg.threshold, window_s=cfg.window.total_seconds(),
                sample_size=count, after={"records": count, **({"apps": len(by_app)} if len(by_app) > 1 else {})},
                look=("SELECT r.id, r.ts, r.model, r.app, d.details FROM detections d JOIN records r "
                      f"ON r.id = d.record_id WHERE d.detector = '{self.detector}' AND d.flagged "
                      # only findings in the response, as counted (a prompt-side finding says "prompt")
                      "AND CAST(d.details AS TEXT) LIKE '%\"response\"%' "
                      f"AND r.ts > '{since}'{_sql_filter(scope).replace(' AND ', ' AND r.')} "
                      "ORDER BY r.ts DESC LIMIT 50;"),
            )
        return firing

    def examples(self, conn: Connection, now: datetime, scope: str) -> Sequence[str]:
        """The newest records of ``scope`` with the finding in the response, from the newest minutes whose
        counter says they hold one (each minute read through the ``ts`` index)."""
        since = now - self.window
        minutes = conn.scalars(
            select(_sm.minute).where(_sm.minute >= minute_of(since), _sm[self.counter] > 0, *_minute_filter(scope))
            .group_by(_sm.minute).order_by(_sm.minute.desc()).limit(EXAMPLES))
        scoped = _scope_filter(scope)
        found: list[str] = []
        for minute in map(_utc, minutes):
            stmt = (select(records.c.id, detections.c.details)
                    .select_from(detections.join(records, records.c.id == detections.c.record_id))
                    .where(records.c.ts >= max(minute, since), records.c.ts < minute + MINUTE,
                           detections.c.detector == self.detector, detections.c.flagged.is_(True),
                           *([scoped] if scoped is not None else []))
                    .order_by(records.c.ts.desc()).limit(_EXAMPLE_CANDIDATES))
            found += [record_id for record_id, details in conn.execute(stmt) if in_response(details)]
            if len(found) >= EXAMPLES:
                break
        return found[:EXAMPLES]


@register
class SecretInResponse(LeakRule):
    """A credential (API key, private key, token) in a model response. Critical by default: the secrets
    detector has almost no false positives on prose, and a leaked key must be rotated now."""

    kind = "secret_in_response"
    detector = "secrets"
    counter = "secret_in_response"
    what = "a secret"


@register
class PiiInResponse(LeakRule):
    """Personal data (e-mail, phone, card, SSN…) in a model response. A warning by default: pattern-based
    PII detection flags some legitimate answers (a support address), so it should not page at night."""

    kind = "pii_in_response"
    detector = "pii"
    counter = "pii_in_response"
    what = "personal data"
