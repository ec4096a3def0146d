"""Spend rule: what the calls of a model or app cost over the window, against a budget.

Reads the per-minute spend of `stream_minutes` (``cost_n``, ``cost_sum``: records whose source reports a cost —
LiteLLM's ``response_cost``, an OTLP cost attribute, the record's ``cost_usd``), so an evaluation costs the
same at any traffic. Records without a cost are not counted: a window with none is not evaluated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import Connection, func, select

from monitor.alerts.evidence import Evidence
from monitor.alerts.rules.base import (
    EXAMPLES,
    Rule,
    _exceeds,
    _ids_in_minutes,
    _minute_filter,
    _minute_sums,
    _since,
    _sm,
    _sql_filter,
    _window_start,
    register,
)
from monitor.durations import human_duration
from monitor.ingest.steps.aggregate import minute_of
from monitor.storage.schema import records


def _usd(value: float) -> str:
    """Dollars as people read a bill: cents above a dollar, four decimals below.

    >>> _usd(1234.5), _usd(0.00042)
    ('$1,234.50', '$0.0004')
    """
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"


@register
class Spend(Rule):
    """Fires when the spend of a scope (``scope = "model"`` or ``"app"``; ``global`` for the whole bill) over
    ``window`` exceeds ``threshold`` US dollars, with at least ``min_samples`` priced calls; with ``baseline``
    it must also exceed ``factor`` × the spend of the baseline window before (a spend spike, scaled to the same
    length). ``fetch`` gives ``{"current"|"baseline": {scope: (priced calls, dollars)}}``.

    >>> from monitor.config import AlertRuleConfig
    >>> rule = Spend("spend", AlertRuleConfig(kind="spend", scope="model", threshold=50, window="1h"))
    >>> rule.decide({"current": {"model=gpt-x": (12000, 63.2)}, "baseline": {}}, now=None)["model=gpt-x"].summary
    'spend $63.20 over the last 1h on 12000 priced calls ($0.0053 per call), above the $50.00 budget'
    """

    kind = "spend"

    def _sums(self, conn: Connection, *where: object) -> dict[str, tuple[int, float]]:
        rows = _minute_sums(conn, self.config.scope, [func.sum(_sm.cost_n), func.sum(_sm.cost_sum)],
                            _sm.cost_n > 0, *where)
        return {scope: (int(n), float(total or 0.0)) for scope, (n, total) in rows.items() if n}

    def fetch(self, conn: Connection, now: datetime) -> dict[str, dict[str, tuple[int, float]]]:
        start = _window_start(now, self.window)
        baseline = {}
        if self.config.baseline is not None:
            baseline = self._sums(conn, _sm.minute >= minute_of(start - self.config.baseline), _sm.minute < start)
        return {"current": self._sums(conn, _sm.minute >= start), "baseline": baseline}

    def decide(self, fetched: Mapping[str, Mapping[str, tuple[int, float]]], now: datetime | None
               ) -> dict[str, Evidence]:
        cfg, firing = self.config, {}
        window_s = cfg.window.total_seconds()
        for scope, (n, spent) in fetched["current"].items():
            if n < cfg.min_samples:
                continue
            base_n, base_spent = fetched["baseline"].get(scope, (0, 0.0))
            base = None
            if cfg.baseline is not None and base_n >= cfg.min_samples:
                base = base_spent * window_s / cfg.baseline.total_seconds()  # the same length as the window
            if not _exceeds(spent, cfg.threshold, base, cfg.factor, cfg.baseline is not None):
                continue
            summary = (f"spend {_usd(spent)} over the last {human_duration(window_s)} on {n} priced calls "
                       f"({_usd(spent / n)} per call), above the {_usd(cfg.threshold)} budget")
            if base is not None:
                summary += f"; {_usd(base)} for as long before it ({cfg.factor:g}× allowed)"
            since = _since(now, cfg.window) if now else "<window start>"
            firing[scope] = Evidence(
                summary=summary, value=spent, threshold=max(cfg.threshold, (base or 0.0) * cfg.factor),
                window_s=window_s, sample_size=n,
                before={"usd": base, "calls": base_n} if base is not None else None,
                after={"usd": spent, "calls": n, "usd_per_call": spent / n},
                look=(f"SELECT model, app, route, \"user\", count(*) AS calls, sum(cost_usd) AS usd FROM records "
                      f"WHERE ts > '{since}'{_sql_filter(scope)} AND cost_usd IS NOT NULL "
                      f"GROUP BY 1, 2, 3, 4 ORDER BY usd DESC LIMIT 20;"),
            )
        return firing

    def examples(self, conn: Connection, now: datetime, scope: str) -> Sequence[str]:
        """The costliest calls of the window: they lie in the minutes that spent most."""
        minutes = conn.scalars(
            select(_sm.minute).where(_sm.minute >= _window_start(now, self.window), _sm.cost_n > 0,
                                     *_minute_filter(scope))
            .group_by(_sm.minute).order_by(func.sum(_sm.cost_sum).desc()).limit(EXAMPLES))
        found = _ids_in_minutes(conn, scope, list(minutes), records.c.cost_usd.is_not(None),
                                order=records.c.cost_usd)
        return [rid for _, rid in sorted(found, key=lambda f: f[0], reverse=True)[:EXAMPLES]]
