"""Accuracy rule: quality from reviewers' labels on uniform samples, judged by its confidence interval.

Its own module because it reads labels through `monitor.review.estimates` (slow, so cached per ``refresh``)
and decides on intervals and a significance test, not on counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import Connection, select

from monitor.alerts.evidence import Evidence
from monitor.alerts.rules.base import EXAMPLES, GLOBAL, Rule, _scope_label, _sql_filter, register
from monitor.config import AlertRuleConfig
from monitor.durations import human_duration
from monitor.review.estimates import INCORRECT, Proportion, accuracy_estimates, significantly_lower
from monitor.storage.schema import labels, samples


def _pct(p: Proportion) -> str:
    return f"{p.estimate:.1%} (95% CI {p.low:.1%}–{p.high:.1%}, {p.n} labelled)"


@register
class Accuracy(Rule):
    """A model's accuracy, estimated from reviewers' labels on uniform samples (`monitor.review.estimates`),
    is too low: the upper bound of its 95 % interval is below ``threshold`` (the target accuracy, e.g. 0.9;
    0 turns this test off), or this ``window`` is significantly lower than the one before it (``baseline``
    long, default the same length; a one-sided test at 5 %). Each needs ``min_samples`` labelled samples in
    its window. Typical: ``window = "1d"``, a warning, ``scope = "model"``. Labels trickle in for hours, so a
    window's estimate firms up late; the interval, not the point estimate, decides.

    ``fetch`` gives ``{"current": {scope: Proportion}, "previous": {scope: Proportion}}``. The estimate reads
    every label, so it is re-read at most every ``refresh`` rather than on each evaluation (every 2 s); the
    answer can be no staler than that.
    """

    kind = "accuracy"
    confidence: ClassVar[float] = 0.95
    alpha: ClassVar[float] = 0.05
    refresh: ClassVar[timedelta] = timedelta(minutes=1)

    def __init__(self, name: str, config: AlertRuleConfig, *, group_id: str = "watchkeeper") -> None:
        super().__init__(name, config, group_id=group_id)
        self._cached: tuple[datetime, Any] | None = None

    @property
    def previous(self) -> timedelta:
        return self.config.baseline or self.window

    def _by(self) -> tuple[str, ...]:
        return () if self.config.scope == GLOBAL else (self.config.scope,)

    def _estimates(self, conn: Connection, start: datetime, end: datetime) -> dict[str, Proportion]:
        by = self._by()
        found = accuracy_estimates(conn.engine, start, end, by=by, confidence=self.confidence)
        return {_scope_label(self.config.scope, [e.group[by[0]]] if by else []): e.accuracy for e in found}

    def fetch(self, conn: Connection, now: datetime) -> dict[str, dict[str, Proportion]]:
        if self._cached is not None and timedelta(0) <= now - self._cached[0] < self.refresh:
            return self._cached[1]
        start = now - self.window
        fetched = {"current": self._estimates(conn, start, now),
                   "previous": self._estimates(conn, start - self.previous, start)}
        self._cached = (now, fetched)
        return fetched

    def decide(self, fetched: Mapping[str, Mapping[str, Proportion]], now: datetime | None
               ) -> dict[str, Evidence]:
        cfg, firing = self.config, {}
        window, previous = human_duration(cfg.window.total_seconds()), human_duration(self.previous.total_seconds())
        for scope, current in fetched["current"].items():
            if current.n < cfg.min_samples:
                continue
            before = fetched["previous"].get(scope)
            if before is not None and before.n < cfg.min_samples:
                before = None
            below_target = cfg.threshold > 0 and current.high < cfg.threshold
            dropped = before is not None and significantly_lower(current, before, self.alpha)
            if not (below_target or dropped):
                continue
            reasons = []
            if below_target:
                reasons.append(f"even its upper bound is below the target {cfg.threshold:.1%}")
            if dropped:
                reasons.append(f"significantly lower than the previous {previous}")
            compared = _pct(before) if before is not None else "too few labels to compare"
            firing[scope] = Evidence(
                summary=(f"accuracy {_pct(current)} over the last {window}: {' and '.join(reasons)}; "
                         f"previous {previous}: {compared}"),
                value=current.estimate,
                threshold=cfg.threshold if below_target or before is None else before.estimate,
                window_s=cfg.window.total_seconds(), sample_size=current.n,
                before=_interval(before) if before is not None else None, after=_interval(current),
                look=self.look(scope, now),
            )
        return firing

    def look(self, scope: str, now: datetime | None) -> str:
        since = (now - self.window - self.previous).strftime("%Y-%m-%d 00:00:00+00") if now else "<start>"
        return (f"SELECT * FROM review_accuracy_daily WHERE window_start >= '{since}'{_sql_filter(scope)} "
                "ORDER BY window_start DESC, app; -- the review page's /estimates shows the intervals")

    def examples(self, conn: Connection, now: datetime, scope: str) -> Sequence[str]:
        """Uniform samples in the window that a reviewer judged incorrect, newest first."""
        stmt = (select(samples.c.record_id)
                .join(labels, labels.c.sample_id == samples.c.id)
                .where(samples.c.reason == "uniform", samples.c.ts >= now - self.window, samples.c.ts < now,
                       labels.c.verdict == INCORRECT))
        if scope != GLOBAL:
            key, _, value = scope.partition("=")
            column = samples.c[key]
            stmt = stmt.where(column.is_(None) if key == "app" and value == "-" else column == value)
        return list(dict.fromkeys(conn.scalars(stmt.order_by(samples.c.ts.desc()).limit(4 * EXAMPLES))))[:EXAMPLES]


def _interval(p: Proportion) -> dict[str, float]:
    return {"accuracy": p.estimate, "low": p.low, "high": p.high, "n": p.n, "n_effective": round(p.n_effective, 1)}
