"""The rollout guardrail's scheduled half: compare ``[compare] candidate`` with ``baseline`` every ``interval``
and keep the result in `reports` (kind ``compare``: the whole comparison as JSON, the HTML page, and the
guarded metrics on which the candidate is significantly worse under ``worse``).

The alert rule ``compare_guardrail`` (`monitor.alerts.rules.compare`) reads the newest such row; it never
recomputes. A window where either model has fewer than ``min_records`` records is stored with status
``not enough data`` and an empty ``worse``, so an alert resolves rather than firing on a handful of records.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert

from monitor.compare.load import load_side
from monitor.compare.metrics import Comparison, Metric, compare_sides
from monitor.compare.render import to_html
from monitor.config import CompareConfig, Config
from monitor.jobs.scheduler import Job
from monitor.storage.schema import reports

log = logging.getLogger(__name__)
KIND = "compare"


def guarded(metric: Metric, names: list[str]) -> bool:
    """Whether a metric is guarded: its name, or its family (``shadow_agreement`` for every reference)."""
    return metric.name in names or metric.name.partition(".")[0] in names


def worse_metrics(comparison: Comparison, config: CompareConfig) -> list[Metric]:
    """The guarded metrics on which the candidate (B) is significantly worse, most certain first."""
    found = [m for m in comparison.metrics if m.verdict == "worse" and guarded(m, config.guarded)]
    return sorted(found, key=lambda m: (m.p_adjusted or 0.0, m.app))


def run_guardrail(engine: Engine, config: Config, now: datetime) -> dict[str, Any]:
    """Compare candidate with baseline over ``[now - window, now)`` and store the result; returns its summary."""
    cfg = config.compare
    assert cfg.candidate is not None and cfg.baseline is not None
    start = now - cfg.window
    side_a = load_side(engine, cfg.baseline, start, now)
    side_b = load_side(engine, cfg.candidate, start, now)
    summary: dict[str, Any] = {"baseline": cfg.baseline, "candidate": cfg.candidate, "worse": []}
    html = None
    if min(side_a.n, side_b.n) < cfg.min_records:
        summary |= {"status": "not enough data", "n_a": side_a.n, "n_b": side_b.n}
    else:
        result = compare_sides(side_a, side_b, by_app=cfg.by_app, alpha=cfg.alpha,
                               toxic_at=config.detectors.toxicity.threshold,
                               low_feedback_below=config.sampling.low_feedback_below)
        result.context.update({"window_a": f"{start.isoformat()} .. {now.isoformat()}"})
        summary |= result.as_dict() | {"status": "compared",
                                        "worse": [m.as_dict() for m in worse_metrics(result, cfg)]}
        html = to_html(result)
    with engine.begin() as conn:
        conn.execute(insert(reports), [{
            "kind": KIND, "model": cfg.candidate, "created_at": now, "reference_start": start,
            "reference_end": now, "current_start": start, "current_end": now, "summary": summary, "html": html}])
    log.info("compared %s with %s: %s, worse on %d guarded metric(s)", cfg.candidate, cfg.baseline,
             summary["status"], len(summary["worse"]))
    return summary


def build_jobs(config: Config) -> list[Job]:
    """The guardrail job, when ``[compare]`` names a candidate and a baseline."""
    if not config.compare.enabled:
        return []

    def run(engine: Engine, slot: datetime) -> None:
        run_guardrail(engine, config, datetime.now(UTC))

    return [Job("compare-guardrail", config.compare.interval, run)]
