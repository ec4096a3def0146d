"""Metrics read from the database at scrape time: what the tables already hold, exposed as gauges and
counters, so they are right whichever process (a worker, the supervisor, another daemon on another host)
did the work, and survive restarts.

Each scrape runs a handful of small aggregate queries (no scan of `records`); the result is cached for
``min_interval_s`` so several scrapers do not multiply the load. When the database does not answer,
``watchkeeper_database_up`` is 0 and the other families are left out (Prometheus marks them stale) rather
than reported as zero.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, case, func, select
from sqlalchemy.exc import SQLAlchemyError

from monitor.storage.db import as_utc
from monitor.storage.schema import (
    alert_outbox,
    alerts,
    consumer_progress,
    drift_events,
    labels,
    reference_health,
    samples,
    shadow_comparisons,
)

log = logging.getLogger(__name__)

SHADOW_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def stream_model(stream: str) -> str:
    """The model a drift stream is about (``model=m1,app=*`` → ``m1``), ``*`` for streams across models.

    >>> stream_model("model=m1,app=*"), stream_model("app=chat"), stream_model("*")
    ('m1', '*', '*')
    """
    for part in stream.split(","):
        key, _, value = part.partition("=")
        if key.strip() == "model" and value:
            return value.strip()
    return "*"


class StateCollector(Collector):
    """A `prometheus_client` collector over the database of one deployment (``group_id``)."""

    def __init__(self, engine: Engine, group_id: str, *, min_interval_s: float = 2.0) -> None:
        self.engine = engine
        self.group_id = group_id
        self.min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._cached: list[Metric] = []
        self._at = -1e9
        self._down_logged = False

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if time.monotonic() - self._at >= self.min_interval_s:
                self._cached = self._read()
                self._at = time.monotonic()
            yield from self._cached

    def _read(self) -> list[Metric]:
        up = GaugeMetricFamily("watchkeeper_database_up", "1 when the database answered the last metrics scrape.")
        try:
            with self.engine.connect() as conn:
                families = [*self._lag(conn), *self._drift(conn), *self._alerts(conn), *self._outbox(conn),
                            *self._review(conn), *self._shadow(conn), *self._reference(conn)]
        except SQLAlchemyError as exc:
            if not self._down_logged:
                text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
                log.warning("metrics: database not answering (%s)", text[0][:200] if text else type(exc).__name__)
                self._down_logged = True
            up.add_metric([], 0)
            return [up]
        self._down_logged = False
        up.add_metric([], 1)
        return [up, *families]

    def _lag(self, conn: Connection) -> list[Metric]:
        lag = GaugeMetricFamily("watchkeeper_consumer_lag",
                                "Messages on a partition not yet stored and committed (log end - committed).",
                                labels=["topic", "partition"])
        t = consumer_progress.c
        for row in conn.execute(select(t.topic, t.partition, t.committed, t.highwater)
                                .where(t.group_id == self.group_id)):
            lag.add_metric([row.topic, str(row.partition)], max(0, (row.highwater or row.committed) - row.committed))
        return [lag]

    def _drift(self, conn: Connection) -> list[Metric]:
        events = CounterMetricFamily("watchkeeper_drift_events", "Drift events found, by model and signal.",
                                     labels=["model", "signal"])
        t = drift_events.c
        totals: dict[tuple[str, str], int] = {}
        for row in conn.execute(select(t.stream, t.signal, func.count()).group_by(t.stream, t.signal)):
            key = (stream_model(row.stream), row.signal)
            totals[key] = totals.get(key, 0) + row[2]
        for key, n in sorted(totals.items()):
            events.add_metric(list(key), n)
        return [events]

    def _alerts(self, conn: Connection) -> list[Metric]:
        firing = GaugeMetricFamily("watchkeeper_alerts_firing", "Alerts firing now (silenced ones included), "
                                   "by rule and severity.", labels=["rule", "severity"])
        t = alerts.c
        for row in conn.execute(select(t.rule, t.severity, func.count()).where(t.status == "firing")
                                .group_by(t.rule, t.severity)):
            firing.add_metric([row.rule, row.severity], row[2])
        return [firing]

    def _outbox(self, conn: Connection) -> list[Metric]:
        pending = GaugeMetricFamily("watchkeeper_alert_outbox_pending", "Alert notifications waiting to be sent.",
                                    labels=["sink"])
        failures = CounterMetricFamily("watchkeeper_alert_delivery_failures",
                                       "Failed delivery attempts of alert notifications, by sink.", labels=["sink"])
        dead = GaugeMetricFamily("watchkeeper_alert_outbox_dead", "Alert notifications given up on, by sink.",
                                 labels=["sink"])
        t = alert_outbox.c
        failed_attempts = t.attempts - case((t.status == "sent", 1), else_=0)
        query = select(t.sink,
                       func.sum(case((t.status == "pending", 1), else_=0)),
                       func.sum(case((t.status == "dead", 1), else_=0)),
                       func.sum(case((failed_attempts > 0, failed_attempts), else_=0))).group_by(t.sink)
        for sink, n_pending, n_dead, n_failed in conn.execute(query):
            pending.add_metric([sink], n_pending or 0)
            dead.add_metric([sink], n_dead or 0)
            failures.add_metric([sink], n_failed or 0)
        return [pending, dead, failures]

    def _review(self, conn: Connection) -> list[Metric]:
        depth = GaugeMetricFamily("watchkeeper_review_queue_depth", "Samples waiting for a first review label.")
        unlabelled = ~select(labels.c.id).where(labels.c.record_id == samples.c.record_id).exists()
        depth.add_metric([], conn.execute(select(func.count()).select_from(samples).where(unlabelled)).scalar_one())
        return [depth]

    def _shadow(self, conn: Connection) -> list[Metric]:
        replays = CounterMetricFamily("watchkeeper_shadow_replays",
                                      "Prompts replayed through a reference model, by reference and outcome "
                                      "(agree, disagree, failed).", labels=["reference_model", "outcome"])
        seconds = HistogramMetricFamily("watchkeeper_shadow_replay_duration_seconds",
                                        "Reference model answer time of successful replays.",
                                        labels=["reference_model"])
        t = shadow_comparisons.c
        ok = t.error.is_(None)
        latency_s = t.latency_ms / 1000.0
        columns: list[Any] = [
            t.reference_model,
            func.sum(case((ok & t.agree.is_(True), 1), else_=0)),
            func.sum(case((ok & ~t.agree.is_(True), 1), else_=0)),
            func.sum(case((ok, 0), else_=1)),
            func.sum(case((ok & t.latency_ms.is_not(None), latency_s), else_=0)),
            func.sum(case((ok & t.latency_ms.is_not(None), 1), else_=0)),
            *(func.sum(case((ok & (latency_s <= b), 1), else_=0)) for b in SHADOW_BUCKETS_S),
        ]
        for row in conn.execute(select(*columns).group_by(t.reference_model)):
            model, agree, disagree, failed, total_s, n = row[:6]
            for outcome, value in (("agree", agree), ("disagree", disagree), ("failed", failed)):
                replays.add_metric([model, outcome], value or 0)
            buckets = [(f"{b:g}", float(c or 0)) for b, c in zip(SHADOW_BUCKETS_S, row[6:], strict=True)]
            seconds.add_metric([model], [*buckets, ("+Inf", float(n or 0))], float(total_s or 0))
        return [replays, seconds]

    def _reference(self, conn: Connection) -> list[Metric]:
        up = GaugeMetricFamily("watchkeeper_reference_up", "1 when the reference server answered its last "
                               "health check.", labels=["reference"])
        waiting = GaugeMetricFamily("watchkeeper_reference_requests_waiting",
                                    "Requests queued at the reference server at its last scrape.", labels=["reference"])
        kv = GaugeMetricFamily("watchkeeper_reference_kv_cache_usage_ratio",
                               "KV-cache share in use at the reference server (0-1) at its last scrape.",
                               labels=["reference"])
        seen = GaugeMetricFamily("watchkeeper_reference_last_check_timestamp_seconds",
                                 "When the reference server was last checked (Unix time).", labels=["reference"])
        t = reference_health.c
        latest = select(t.reference, func.max(t.ts).label("ts")).group_by(t.reference).subquery()
        query = select(t.reference, t.ts, t.up, t.waiting, t.kv_cache_usage).join(
            latest, (latest.c.reference == t.reference) & (latest.c.ts == t.ts))
        for row in conn.execute(query):
            up.add_metric([row.reference], 1 if row.up else 0)
            seen.add_metric([row.reference], as_utc(row.ts).timestamp())
            if row.waiting is not None:
                waiting.add_metric([row.reference], row.waiting)
            if row.kv_cache_usage is not None:
                kv.add_metric([row.reference], row.kv_cache_usage)
        return [up, waiting, kv, seen]
