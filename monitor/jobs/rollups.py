"""Hourly rollups: per hour × model × app counts, rates, latency percentiles and mean lengths.

Analysts and dashboards read ``rollups_hourly`` instead of scanning ``records``. Each run recomputes the
hours (by record time) that overlap the last ``lookback``, the current partial hour included, and replaces
their rows in one transaction per hour — so a run is idempotent and records that arrive late, within the
lookback, are counted. Records without an app are rolled up under ``app = ''``.

>>> from datetime import UTC, datetime
>>> from monitor.config import RollupsConfig
>>> from monitor.storage.db import make_engine
>>> from monitor.storage.schema import metadata
>>> engine = make_engine("sqlite://")
>>> metadata.create_all(engine)
>>> roll_up(engine, RollupsConfig(), now=datetime(2026, 5, 1, 13, 20, tzinfo=UTC))  # no traffic: no rows
0
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import Engine, case, delete, func, insert, select

from detectors.config import TOXIC_AT
from monitor.config import Config, RollupsConfig
from monitor.jobs.scheduler import Job, slot_start
from monitor.storage.schema import records, rollups_hourly

HOUR = timedelta(hours=1)


def build_jobs(config: Config) -> list[Job]:
    """The rollup job, when enabled."""
    cfg = config.rollups
    if not cfg.enabled:
        return []

    def run(engine: Engine, slot: datetime) -> None:
        roll_up(engine, cfg, now=datetime.now(UTC), toxic_at=config.detectors.toxicity.threshold)

    return [Job("rollups_hourly", cfg.interval, run)]


def hours_to_roll(lookback: timedelta, now: datetime) -> list[datetime]:
    """Starts of the hours overlapping ``(now - lookback, now]``, oldest first."""
    newest = slot_start(HOUR, now)
    count = max(1, math.ceil(lookback / HOUR))
    return [newest - i * HOUR for i in reversed(range(count))]


def roll_up(engine: Engine, config: RollupsConfig, now: datetime, toxic_at: float = TOXIC_AT) -> int:
    """Recompute the rollup rows of the recent hours; returns how many rows were written. ``toxic_at`` is
    ``[detectors.toxicity] threshold``."""
    written = 0
    for hour in hours_to_roll(config.lookback, now):
        written += _roll_hour(engine, config, hour, toxic_at)
    return written


def _roll_hour(engine: Engine, config: RollupsConfig, hour: datetime, toxic_at: float) -> int:
    r = records.c
    app = func.coalesce(r.app, "").label("app")
    in_hour = (r.ts >= hour, r.ts < hour + HOUR)

    def count_if(condition):  # type: ignore[no-untyped-def]
        return func.sum(case((condition, 1), else_=0))

    totals = (
        select(
            r.model,
            app,
            func.count().label("requests"),
            count_if(r.status == "error").label("errors"),
            count_if(r.refusal.is_(True)).label("refusals"),
            func.count(r.refusal).label("refusal_scored"),
            count_if(r.response_toxicity >= toxic_at).label("toxic"),
            func.count(r.response_toxicity).label("toxicity_scored"),
            func.avg(r.prompt_chars).label("mean_prompt_chars"),
            func.avg(r.response_chars).label("mean_response_chars"),
            func.sum(r.tokens_in).label("tokens_in"),
            func.sum(r.tokens_out).label("tokens_out"),
            func.count(r.feedback_score).label("feedback_count"),
            func.avg(r.feedback_score).label("feedback_mean"),
        )
        .where(*in_hour)
        .group_by(r.model, app)
    )
    latencies = select(r.model, app, r.latency_ms).where(*in_hour, r.latency_ms.is_not(None))
    now = datetime.now(UTC)
    with engine.begin() as conn:
        by_group: dict[tuple[str, str], list[float]] = defaultdict(list)
        for model, app_name, latency in conn.execute(latencies):
            by_group[(model, app_name)].append(float(latency))
        rows = []
        for t in conn.execute(totals):
            p50, p95 = _percentiles(by_group.get((t.model, t.app), []))
            rows.append(
                {
                    "hour": hour,
                    "model": t.model,
                    "app": t.app,
                    "requests": t.requests,
                    "errors": int(t.errors or 0),
                    "refusals": int(t.refusals or 0),
                    "toxic": int(t.toxic or 0),
                    "error_rate": (t.errors or 0) / t.requests,
                    "refusal_rate": _rate(t.refusals, t.refusal_scored),
                    "toxic_rate": _rate(t.toxic, t.toxicity_scored),
                    "latency_p50_ms": p50,
                    "latency_p95_ms": p95,
                    "mean_prompt_chars": float(t.mean_prompt_chars),
                    "mean_response_chars": float(t.mean_response_chars),
                    "tokens_in": t.tokens_in,
                    "tokens_out": t.tokens_out,
                    "feedback_count": t.feedback_count,
                    "feedback_mean": None if t.feedback_mean is None else float(t.feedback_mean),
                    "updated_at": now,
                }
            )
        conn.execute(delete(rollups_hourly).where(rollups_hourly.c.hour == hour))
        if rows:
            conn.execute(insert(rollups_hourly), rows)
    return len(rows)


def _rate(hits: int | None, scored: int) -> float | None:
    return None if not scored else (hits or 0) / scored


def _percentiles(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    p50, p95 = np.percentile(np.asarray(values), [50, 95])
    return float(p50), float(p95)
