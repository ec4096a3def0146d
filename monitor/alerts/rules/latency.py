"""Latency rule: the p95 of ``latency_ms``, against a ceiling and optionally the baseline before.

Separate from the rate rules because it reads the latency histograms of `stream_minutes`, not hit counts,
and its examples are the slowest records rather than the newest hits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

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
from monitor.ingest.steps.aggregate import minute_of, quantile
from monitor.storage.schema import STREAM_LATENCY_COLUMNS, records


@register
class LatencyP95(Rule):
    """p95 of ``latency_ms`` over the window: fires above ``threshold`` ms and, with ``baseline``, above
    ``factor`` × the baseline window's p95. ``fetch`` gives ``{scope: (n, p95)}`` for both windows.

    The p95 is estimated from the latency histograms of `stream_minutes` (`monitor.ingest.steps.aggregate.quantile`):
    within one bucket of the exact value (buckets are a factor 1.26 wide), within ±10 % on lognormal latencies,
    and exact when the latencies around it are all equal. Windows start on a minute boundary."""

    kind = "latency_p95"

    def _p95(self, conn: Connection, *where: Any) -> dict[str, tuple[int, float]]:
        columns = [func.sum(_sm.latency_n), func.min(_sm.latency_min), func.max(_sm.latency_max),
                   *(func.sum(_sm[c]) for c in STREAM_LATENCY_COLUMNS)]
        out = {}
        for scope, (n, low, high, *histogram) in _minute_sums(
                conn, self.config.scope, columns, _sm.latency_n > 0, *where).items():
            p95 = quantile([int(c) for c in histogram], 0.95, low, high)
            if n and p95 is not None:
                out[scope] = (int(n), p95)
        return out

    def fetch(self, conn: Connection, now: datetime) -> dict[str, dict[str, tuple[int, float]]]:
        start = _window_start(now, self.window)
        baseline = {}
        if self.config.baseline is not None:
            baseline = self._p95(conn, _sm.minute >= minute_of(start - self.config.baseline), _sm.minute < start)
        return {"current": self._p95(conn, _sm.minute >= start), "baseline": baseline}

    def decide(self, fetched: Mapping[str, Mapping[str, tuple[int, float]]], now: datetime | None
               ) -> dict[str, Evidence]:
        cfg, firing = self.config, {}
        for scope, (n, p95) in fetched["current"].items():
            if n < cfg.min_samples:
                continue
            base_n, base_p95 = fetched["baseline"].get(scope, (0, math.nan))
            base = base_p95 if base_n >= cfg.min_samples else None
            if not _exceeds(p95, cfg.threshold, base, cfg.factor, cfg.baseline is not None):
                continue
            summary = f"latency p95 {p95:,.0f} ms over the last {human_duration(cfg.window.total_seconds())}"
            summary += f" ({n} records)" + (f", was {base:,.0f} ms before" if base is not None else "")
            since = _since(now, cfg.window) if now else "<window start>"
            firing[scope] = Evidence(
                summary=summary, value=p95, threshold=max(cfg.threshold, (base or 0) * cfg.factor),
                window_s=cfg.window.total_seconds(), sample_size=n,
                before={"p95_ms": base, "n": base_n} if base is not None else None,
                after={"p95_ms": p95, "n": n},
                look=f"SELECT id, ts, model, app, latency_ms FROM records WHERE ts > '{since}'"
                     f"{_sql_filter(scope)} ORDER BY latency_ms DESC LIMIT 50;",
            )
        return firing

    def examples(self, conn: Connection, now: datetime, scope: str) -> Sequence[str]:
        """The slowest records of the window: they lie in the minutes with the highest ``latency_max``."""
        slowest = func.max(_sm.latency_max)
        minutes = conn.scalars(
            select(_sm.minute).where(_sm.minute >= _window_start(now, self.window), _sm.latency_max.is_not(None),
                                     *_minute_filter(scope))
            .group_by(_sm.minute).order_by(slowest.desc()).limit(EXAMPLES))
        found = _ids_in_minutes(conn, scope, list(minutes), records.c.latency_ms.is_not(None),
                                order=records.c.latency_ms)
        return [rid for _, rid in sorted(found, key=lambda f: f[0], reverse=True)[:EXAMPLES]]
