"""One evaluation: rules → lifecycle → silences and inhibition → grouping → routing → outbox.

Everything decided is written in one transaction: the alert rows, their silenced/inhibited flags, the
outbox rows for the notifications due now and the alerts' ``last_notified_at``. Either all of it is
recorded or none of it (the next evaluation decides again), so a crash never loses or doubles a decision.
Rules read through their own short connections first; a rule that fails is logged and its alerts are left
untouched rather than resolved.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine

from monitor.alerts import grouping, inhibition, lifecycle, outbox, render, routing, silences
from monitor.alerts.lifecycle import Alert, Candidate
from monitor.alerts.rules import Rule, build_rules
from monitor.config import AlertsConfig, Config

log = logging.getLogger(__name__)


@dataclass(slots=True)
class EvaluationReport:
    firing: list[str] = field(default_factory=list)
    """Fingerprints firing after this evaluation."""
    new: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    failed_rules: list[str] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)
    """Outbox ids written by this evaluation."""


def evaluate_once(engine: Engine, config: Config, now: datetime | None = None, *,
                  rules: Sequence[Rule] | None = None) -> EvaluationReport:
    """Evaluate every enabled rule at ``now`` and queue the notifications that are due."""
    now = now or datetime.now(UTC)
    cfg = config.alerts
    if rules is None:
        rules = build_rules(cfg, group_id=config.kafka.group_id, toxic_at=config.detectors.toxicity.threshold)
    report = EvaluationReport()
    candidates: list[Candidate] = []
    decided: set[str] = set()
    for rule in rules:
        try:
            with engine.connect() as conn:
                found = rule.evaluate(conn, now)
        except Exception:
            log.exception("alert rule %s (%s) failed; its alerts keep their state", rule.name, rule.kind)
            report.failed_rules.append(rule.name)
            continue
        decided.add(rule.name)
        candidates += [Candidate(rule.name, scope, rule.severity, ev) for scope, ev in found.items()]

    with engine.begin() as conn:
        firing = [a for a in lifecycle.load_open(conn) if a.status == lifecycle.FIRING]
        d = lifecycle.diff(firing, candidates, decided=decided, undecided=set(report.failed_rules),
                           now=now, resolve_after=cfg.resolve_after)
        lifecycle.apply(conn, d, now)
        report.new = [c.fingerprint for c in d.new]
        report.resolved = [a.fingerprint for a in d.resolved]

        current = lifecycle.load_open(conn)
        active = silences.list_silences(conn, now)
        inhibited = inhibition.inhibited(current, cfg.inhibit)
        for alert in current:
            if alert.status == lifecycle.FIRING:
                lifecycle.set_flags(conn, alert,
                                    silenced=silences.matching(alert.rule, alert.scope, active) is not None,
                                    inhibited=alert.fingerprint in inhibited)
                report.firing.append(alert.fingerprint)

        for note in grouping.plan(current, now, group_wait=cfg.group_wait, repeat_interval=cfg.repeat_interval):
            report.queued += _queue(conn, note, cfg, now)
            lifecycle.mark_notified(conn, (a.id for a in note.alerts), now)
    for fp in report.new:
        log.info("alert firing: %s", fp)
    for fp in report.resolved:
        log.info("alert resolved: %s", fp)
    return report


def _payload(sink: str, kind: str, scope: str, alerts: Sequence[Alert], cfg: AlertsConfig) -> dict[str, Any]:
    if sink == "console":
        return {"text": render.console_text(kind, scope, alerts)}
    return render.slack_message(kind, scope, alerts, review_url=cfg.review_url)


def _queue(conn: Connection, note: grouping.Notification, cfg: AlertsConfig, now: datetime) -> list[int]:
    """Outbox rows for one notification: one per destination its alerts route to. A resolution sent
    through a sink that edits in place becomes an edit of each message that announced the alerts."""
    by_dest: dict[routing.Destination, list[Alert]] = {}
    for alert in note.alerts:
        for dest in routing.destinations(alert.severity, cfg):
            by_dest.setdefault(dest, []).append(alert)
    ids = []
    for dest, alerts in by_dest.items():
        group_key = f"{dest.key}|{note.scope}"
        common = dict(sink=dest.sink, channel=dest.channel, group_key=group_key, now=now)
        loose = alerts
        if note.kind == "resolved" and dest.edits_in_place:
            originals: dict[int, list[Alert]] = {}
            loose = []
            for alert in alerts:
                original = outbox.latest_message(conn, group_key, alert.fingerprint)
                (originals.setdefault(original, []) if original is not None else loose).append(alert)
            for original in originals:
                shown = lifecycle.load_latest(conn, outbox.message_fingerprints(conn, original))
                ids.append(outbox.enqueue(
                    conn, kind="resolved", fingerprints=[a.fingerprint for a in shown], updates_id=original,
                    payload=_payload(dest.sink, "update", note.scope, shown, cfg), **common))  # type: ignore[arg-type]
        if loose:
            ids.append(outbox.enqueue(
                conn, kind=note.kind, fingerprints=[a.fingerprint for a in loose],
                payload=_payload(dest.sink, note.kind, note.scope, loose, cfg), **common))  # type: ignore[arg-type]
    return ids
