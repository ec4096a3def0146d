"""Rendering a notification: Slack Block Kit and the same content as console text.

What an on-call engineer needs at 3 a.m., in this order: what happened and how bad (severity, rule,
scope), the numbers that prove it (value against threshold, before/after, window, sample size), a few
example record ids (ids only — never record text, which may hold the very PII being reported), and where
to look next (a SQL query; review links when ``alerts.review_url`` is set).

``kind`` is ``firing``, ``reminder``, ``resolved``, or ``update`` (a message edited in place: each alert
shows its own current status).

>>> from datetime import datetime, UTC
>>> from types import SimpleNamespace as A
>>> from monitor.alerts.rules import Evidence
>>> t = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
>>> a = A(rule="error_rate", severity="warning", scope="model=m1", status="firing", first_seen=t, last_seen=t,
...       resolved_at=None, count=1, evidence=Evidence("error rate 9.0% (9 of 100)", 0.09, 0.05, 600, 100))
>>> print(console_text("firing", "model=m1", [a]).splitlines()[0])
[WARNING] FIRING model=m1: error_rate
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from monitor.alerts.severity import most_severe
from monitor.durations import human_duration

MAX_ALERTS = 8
_EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:",
          "resolved": ":white_check_mark:"}


def _number(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and ("rate" in key or key == "share"):
        return f"{value:.2%}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _stats(stats: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={_number(k, v)}" for k, v in stats.items()) if stats else "-"


def _observed(alert: Any) -> str:
    """The value against its threshold, in the value's own unit: a percent only for a rate (a float), never
    for a count such as a number of drift events beside a signal's rate. A resolved alert says that these
    were the figures when it last fired, not now."""
    ev = alert.evidence
    key = "rate" if ev.after and "rate" in ev.after and isinstance(ev.value, float) else "value"
    threshold = float(ev.threshold) if key == "rate" else ev.threshold
    observed = f"{_number(key, ev.value)} (threshold {_number(key, threshold)})"
    return f"{observed} when last firing" if alert.status == "resolved" else observed


def _summary(alert: Any) -> str:
    ev = alert.evidence
    return f"back within threshold; when last firing: {ev.summary}" if alert.status == "resolved" else ev.summary


def _status(alert: Any) -> str:
    return "resolved" if alert.status == "resolved" else alert.severity


def title(kind: str, scope: str, alerts: Sequence[Any]) -> str:
    """One line: status, severity, scope and what fired."""
    names = ", ".join(dict.fromkeys(a.rule for a in alerts))
    if kind == "update":
        open_ = [a for a in alerts if a.status != "resolved"]
        kind = "resolved" if not open_ else "firing"
        alerts = open_ or alerts
    label = {"firing": "FIRING", "reminder": "STILL FIRING", "resolved": "RESOLVED"}[kind]
    severity = "RESOLVED" if kind == "resolved" else most_severe(a.severity for a in alerts).upper()
    if kind == "resolved":
        return f"[RESOLVED] {scope}: {names}"
    return f"[{severity}] {label} {scope}: {names}"


def _timing(alert: Any) -> str:
    if alert.status == "resolved" and alert.resolved_at is not None:
        lasted = human_duration((alert.resolved_at - alert.first_seen).total_seconds())
        return f"resolved {alert.resolved_at:%H:%M:%S} UTC after {lasted}"
    lasted = human_duration(max(0.0, (alert.last_seen - alert.first_seen).total_seconds()))
    return f"firing since {alert.first_seen:%Y-%m-%d %H:%M:%S} UTC ({lasted} so far)"


def _links(ids: Sequence[str], review_url: str | None) -> str:
    if not review_url:
        return ", ".join(f"`{i}`" for i in ids)
    base = review_url.rstrip("/")
    return ", ".join(f"<{base}/records/{i}|{i}>" for i in ids)


def _alert_blocks(alert: Any, review_url: str | None) -> list[dict[str, Any]]:
    ev = alert.evidence
    status = _status(alert)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": (
            f"{_EMOJI[status]} *{alert.rule}* · {status} · `{alert.scope}`\n{_summary(alert)}")[:3000]}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Observed*\n{_observed(alert)}"},
            {"type": "mrkdwn", "text": f"*Window / sample*\n{human_duration(ev.window_s)} / {ev.sample_size:,}"},
            {"type": "mrkdwn", "text": f"*Before*\n{_stats(ev.before)}"[:2000]},
            {"type": "mrkdwn", "text": f"*After*\n{_stats(ev.after)}"[:2000]},
            {"type": "mrkdwn", "text": f"*When*\n{_timing(alert)}"},
        ]},
    ]
    context = []
    if ev.examples:
        context.append({"type": "mrkdwn", "text": f"Example records: {_links(ev.examples, review_url)}"[:2000]})
    if context:
        blocks.append({"type": "context", "elements": context})
    if ev.look:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": f"*Where to look*\n```{ev.look}```"[:3000]}})
    return blocks


def slack_message(kind: str, scope: str, alerts: Sequence[Any], *, review_url: str | None = None
                  ) -> dict[str, Any]:
    """``{"text": fallback, "blocks": [...]}`` for chat.postMessage, chat.update or a webhook."""
    head = title(kind, scope, alerts)
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": head[:150]}}]
    for alert in alerts[:MAX_ALERTS]:
        blocks.extend(_alert_blocks(alert, review_url))
        blocks.append({"type": "divider"})
    if len(alerts) > MAX_ALERTS:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"…and {len(alerts) - MAX_ALERTS} more: SELECT * FROM alerts "
                                        "WHERE status = 'firing';"}]})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": (
        "Watchkeeper · `watchkeeper silence add --rule RULE --scope SCOPE --for 2h --reason ...` to mute")}]})
    summary = "; ".join(_summary(a) for a in alerts[:3])
    return {"text": f"{head} — {summary}"[:3000], "blocks": blocks}


def console_text(kind: str, scope: str, alerts: Sequence[Any]) -> str:
    """The same content as `slack_message`, as plain text for a terminal or a log."""
    lines = [title(kind, scope, alerts)]
    for alert in alerts:
        ev = alert.evidence
        lines.append(f"  - {alert.rule} ({_status(alert)}): {_summary(alert)}")
        lines.append(f"    observed {_observed(alert)} · window {human_duration(ev.window_s)} · "
                     f"sample {ev.sample_size:,} · {_timing(alert)}")
        if ev.before or ev.after:
            lines.append(f"    before: {_stats(ev.before)} · after: {_stats(ev.after)}")
        if ev.examples:
            lines.append(f"    examples: {', '.join(ev.examples)}")
        if ev.look:
            lines.append(f"    look: {ev.look}")
    return "\n".join(lines)
