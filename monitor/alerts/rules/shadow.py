"""Shadow agreement rule: a production model agrees less with its shadow reference model.

Its own module because it reads `shadow_comparisons` (written by shadow replay, cached per ``refresh``) and
compares proportions per (scope, reference), reporting the reference a scope agrees with least.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import Connection, case, func, select

from monitor.alerts.evidence import Evidence
from monitor.alerts.rules.base import (
    EXAMPLES,
    Rule,
    _quote,
    _scope_columns,
    _scope_label,
    _since,
    _sql_filter,
    register,
)
from monitor.config import AlertRuleConfig
from monitor.durations import human_duration
from monitor.review.estimates import Proportion, significantly_lower, wilson
from monitor.storage.schema import records, shadow_comparisons


def _agreement(n: int, agreed: int) -> Proportion:
    low, high = wilson(agreed, n)
    return Proportion(agreed / n, low, high, n, float(n))


def _since_option(window: timedelta) -> str:
    """A window as ``watchkeeper shadow status --since`` takes it (one unit)."""
    seconds = window.total_seconds()
    return f"{seconds / 3600:g}h" if seconds % 3600 == 0 else f"{math.ceil(seconds / 60)}m"


@register
class ShadowAgreement(Rule):
    """A production model agrees less with its shadow reference (`monitor.shadow.replay`): over ``window`` its share
    of answers that agree is below ``threshold`` (e.g. 0.7; 0 turns this test off), or, with ``baseline``
    set, significantly lower than over the ``baseline`` window just before (a one-sided two-proportion test
    at ``alpha``: strict, because the window slides and the test is repeated on every evaluation). Each
    window needs ``min_samples`` comparisons. Comparisons count by when they were made, as in
    ``watchkeeper shadow status``; with several references a scope reports the one it agrees with least.
    Silent without shadow replay.

    ``fetch`` gives ``{"current": {(scope, reference): (n, agreed)}, "baseline": {…}, "disagreed":
    {(scope, reference): [record ids, newest first]}}``. Comparisons arrive once per replay run (a minute
    by default), so they are re-read at most every ``refresh``.

    >>> rule = ShadowAgreement("shadow_agreement", AlertRuleConfig(
    ...     kind="shadow_agreement", scope="model", threshold=0.7, min_samples=50))
    >>> fetched = {"current": {("model=m1", "ref"): (200, 120)}, "baseline": {}, "disagreed": {}}
    >>> rule.decide(fetched, now=None)["model=m1"].summary
    'agreement with reference ref 60.0% over the last 10m (120 of 200 comparisons): below 70.0%'
    """

    kind = "shadow_agreement"
    alpha: ClassVar[float] = 0.001
    refresh: ClassVar[timedelta] = timedelta(seconds=30)
    max_rows: ClassVar[int] = 10_000

    def __init__(self, name: str, config: AlertRuleConfig, *, group_id: str = "watchkeeper") -> None:
        super().__init__(name, config, group_id=group_id)
        self._cached: tuple[datetime, Any] | None = None

    def _joined(self) -> Any:
        return shadow_comparisons.join(records, records.c.id == shadow_comparisons.c.record_id)

    def _counts(self, conn: Connection, start: datetime, end: datetime) -> dict[tuple[str, str], tuple[int, int]]:
        t = shadow_comparisons.c
        keys = _scope_columns(self.config.scope)
        stmt = (select(*keys, t.reference_model, func.count(), func.sum(case((t.agree.is_(True), 1), else_=0)))
                .select_from(self._joined())
                .where(t.agree.is_not(None), t.created_at > start, t.created_at <= end)
                .group_by(*keys, t.reference_model))
        n = len(keys)
        return {(_scope_label(self.config.scope, row), row[n]): (int(row[n + 1]), int(row[n + 2] or 0))
                for row in conn.execute(stmt)}

    def fetch(self, conn: Connection, now: datetime) -> dict[str, Any]:
        if self._cached is not None and timedelta(0) <= now - self._cached[0] < self.refresh:
            return self._cached[1]
        start = now - self.window
        baseline = {}
        if self.config.baseline is not None:
            baseline = self._counts(conn, start - self.config.baseline, start)
        t = shadow_comparisons.c
        keys = _scope_columns(self.config.scope)
        disagreed: dict[tuple[str, str], list[str]] = {}
        for row in conn.execute(
                select(*keys, t.reference_model, t.record_id).select_from(self._joined())
                .where(t.agree.is_(False), t.created_at > start, t.created_at <= now)
                .order_by(t.created_at.desc(), t.id.desc()).limit(self.max_rows)):
            ids = disagreed.setdefault((_scope_label(self.config.scope, row), row[len(keys)]), [])
            if len(ids) < EXAMPLES:
                ids.append(row[-1])
        fetched = {"current": self._counts(conn, start, now), "baseline": baseline, "disagreed": disagreed}
        self._cached = (now, fetched)
        return fetched

    def decide(self, fetched: Mapping[str, Any], now: datetime | None) -> dict[str, Evidence]:
        cfg, firing = self.config, {}
        for (scope, reference), (n, agreed) in sorted(fetched["current"].items()):
            if n < cfg.min_samples:
                continue
            current = _agreement(n, agreed)
            base_n, base_agreed = fetched["baseline"].get((scope, reference), (0, 0))
            before = _agreement(base_n, base_agreed) if base_n >= cfg.min_samples else None
            below = cfg.threshold > 0 and current.estimate < cfg.threshold
            dropped = before is not None and significantly_lower(current, before, self.alpha)
            if not (below or dropped) or (scope in firing and firing[scope].value <= current.estimate):
                continue
            firing[scope] = self._evidence(scope, reference, (current, agreed), (before, base_agreed),
                                           below, dropped, fetched["disagreed"].get((scope, reference), ()), now)
        return firing

    def _evidence(self, scope: str, reference: str, current: tuple[Proportion, int],
                  before: tuple[Proportion | None, int], below: bool, dropped: bool, examples: Sequence[str],
                  now: datetime | None) -> Evidence:
        cfg = self.config
        (now_p, agreed), (before_p, base_agreed) = current, before
        window = human_duration(cfg.window.total_seconds())
        reasons = []
        if below:
            reasons.append(f"below {cfg.threshold:.1%}")
        summary = (f"agreement with reference {reference} {now_p.estimate:.1%} over the last {window} "
                   f"({agreed} of {now_p.n} comparisons): ")
        if cfg.baseline is not None:
            previous = human_duration(cfg.baseline.total_seconds())
            if dropped:
                reasons.append(f"significantly lower than the previous {previous}")
            compared = (f"{before_p.estimate:.1%} ({base_agreed} of {before_p.n})" if before_p is not None
                        else "too few comparisons to compare")
            summary += f"{' and '.join(reasons)}; previous {previous}: {compared}"
        else:
            summary += " and ".join(reasons)
        since = _since(now, cfg.window) if now else "<window start>"
        return Evidence(
            summary=summary, value=now_p.estimate,
            threshold=cfg.threshold if below or before_p is None else before_p.estimate,
            window_s=cfg.window.total_seconds(), sample_size=now_p.n,
            before=({"agreement": before_p.estimate, "n": before_p.n, "low": before_p.low, "high": before_p.high}
                    if before_p is not None else None),
            after={"agreement": now_p.estimate, "n": now_p.n, "agreed": agreed, "low": now_p.low,
                   "high": now_p.high},
            examples=tuple(examples),
            look=("SELECT s.record_id, s.created_at, s.similarity, s.rouge_l, s.length_ratio, s.refusal_mismatch, "
                  "s.metrics FROM shadow_comparisons s JOIN records r ON r.id = s.record_id "
                  f"WHERE s.reference_model = {_quote(reference)} AND NOT s.agree AND s.created_at > '{since}'"
                  f"{_sql_filter(scope).replace(' AND ', ' AND r.')} ORDER BY s.created_at DESC LIMIT 50; "
                  f"-- and: watchkeeper shadow status --since {_since_option(cfg.window)}; the review queue "
                  "holds each disagreement (reason shadow_disagreement) with both answers"),
        )
