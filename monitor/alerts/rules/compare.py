"""The rollout guardrail's alert: the candidate model is significantly worse than its baseline.

`CandidateWorse` reads the newest `reports` row of kind ``compare`` made within its window (the
``[compare]`` job writes one every ``interval``; see `monitor.jobs.compare`) and fires on ``model=<candidate>``
while that comparison lists any guarded metric as worse. It computes nothing itself, so evaluating it every
few seconds costs one indexed query. Give the rule a window longer than ``[compare] interval``, or it
resolves between two comparisons.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from monitor.alerts.evidence import Evidence
from monitor.alerts.rules.base import Rule, register
from monitor.compare.render import worse_sentence
from monitor.storage.schema import reports

SHOWN = 3


@register
class CandidateWorse(Rule):
    """``[compare] candidate`` significantly worse than ``baseline`` on a guarded metric (Holm-corrected)."""

    kind = "compare_guardrail"

    def fetch(self, conn: Connection, now: datetime) -> dict[str, Any] | None:
        row = conn.execute(
            select(reports.c.summary).where(reports.c.kind == "compare", reports.c.created_at >= now - self.window,
                                            reports.c.created_at <= now)
            .order_by(reports.c.created_at.desc(), reports.c.id.desc()).limit(1)).first()
        return None if row is None else dict(row.summary)

    def decide(self, fetched: dict[str, Any] | None, now: datetime) -> dict[str, Evidence]:
        if not fetched or not fetched.get("worse"):
            return {}
        worse = fetched["worse"]
        a, b = fetched["baseline"], fetched["candidate"]
        shown = "; ".join(worse_sentence(m) for m in worse[:SHOWN])
        more = f"; and {len(worse) - SHOWN} more" if len(worse) > SHOWN else ""
        ratios = [m["ratio"] for m in worse if m.get("ratio")]
        n_b = sum(fetched.get("mix", {}).get("b", {}).values())
        window = fetched.get("window_a", "")
        return {f"model={b}": Evidence(
            summary=f"{b} is significantly worse than {a} on {len(worse)} metric(s): {shown}{more}",
            value=float(max(ratios)) if ratios else float(len(worse)),
            threshold=float(fetched.get("alpha", 0.05)),
            window_s=_window_seconds(window),
            sample_size=int(n_b),
            before={_key(m): m["a"] for m in worse if m.get("a") is not None},
            after={_key(m): m["b"] for m in worse if m.get("b") is not None},
            look=f"watchkeeper compare --model {a} --model {b} --since 1d --by app --format html --output ab.html",
        )}


def _key(metric: dict[str, Any]) -> str:
    return metric["name"] if metric.get("app") in (None, "*") else f"{metric['name']}@{metric['app']}"


def _window_seconds(window: str) -> float:
    start, _, end = window.partition(" .. ")
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return 0.0
