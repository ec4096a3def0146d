"""Agreement with the reference model as a drift signal: one calibrated Bernoulli CUSUM per production model.

Each stored shadow comparison is one 0/1 value (does the production answer agree with the reference's?) of
the stream ``model=M,app=*``. A chart learns the model's usual agreement rate from its first ``warmup``
comparisons and then watches for it dropping, with the same calibration as the ingest drift charts
(`detectors.drift.bernoulli`): at most one false alarm per ``arl0`` comparisons on a steady rate. A drop is
one ``drift_events`` row (signal ``shadow_agreement``, detector ``bernoulli``); a rise re-arms the chart
silently, because a model agreeing more with its reference is no incident.

The feed reads ``shadow_comparisons`` itself, in id order from a watermark, rather than taking rows from the
replayer: whatever stored them (the daemon's shadow worker, a ``watchkeeper shadow replay`` backfill), each
comparison is counted exactly once. The charts and the watermark of one reference are the ``detector_state``
row ``shadow-agreement/<reference model>``, read and written in the same transaction as the events, so a
crash, a restart or another daemon taking the scheduled job over continues exactly where the last run
stopped. The watermark assumes ids become visible in order, which holds while one writer stores comparisons
of a reference at a time (the worker; a concurrent backfill of the same reference may see a few of its
comparisons skipped by the chart, never counted twice).

>>> from sqlalchemy import create_engine
>>> from monitor.storage.schema import metadata
>>> engine = create_engine("sqlite://")
>>> metadata.create_all(engine)
>>> AgreementDrift(engine, "ref-model", warmup=200).update()  # no comparisons yet: nothing to say
[]
"""

from __future__ import annotations

import logging
import zlib
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Connection, Engine, delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from detectors.drift.bank import DriftEvent
from detectors.drift.bernoulli import BernoulliCUSUM
from detectors.drift.chart import Chart
from monitor.config import DriftConfig
from monitor.storage.schema import detector_state, drift_events, records, shadow_comparisons

log = logging.getLogger(__name__)

SIGNAL = "shadow_agreement"
STATE_FORMAT = 1
MAX_WARMUP = 500
"""Comparisons arrive at the replay rate (tens a minute), not the traffic rate: ``drift.warmup`` records would
take days of comparisons, so a chart learns from at most this many (±1.3 points on a 90 % agreement rate,
which the calibration's margin absorbs)."""


def state_key(reference_model: str) -> str:
    """The `detector_state` key of one reference's agreement charts."""
    return f"shadow-agreement/{reference_model}"


def stream_of(model: str) -> str:
    """The drift stream of a production model's agreement (every app together)."""
    return f"model={model},app=*"


def _json(value: Any) -> Any:
    """Plain JSON for the database: NaN and infinities become null (Postgres JSONB rejects them)."""
    return orjson.loads(orjson.dumps(value))


class AgreementDrift:
    """Feeds one reference's new comparisons to per-model agreement charts; stores drops and the state.

    `update` is the whole surface: it reads the comparisons stored since the last call (by any process),
    returns the drops they revealed and has already written them and the charts' state. Stateless between
    calls, so any daemon may call it; calls must not overlap (the scheduler runs the shadow job on one daemon
    at a time). Charts keep the parameters they were created with; new models pick up changed settings.
    """

    def __init__(self, engine: Engine, reference_model: str, *, arl0: float = 1e6, warmup: int = MAX_WARMUP,
                 odds_ratio: float = 3.0, margin: float = 1.0, page: int = 10_000) -> None:
        self.engine = engine
        self.reference_model = reference_model
        self.arl0, self.warmup, self.odds_ratio, self.margin = arl0, warmup, odds_ratio, margin
        self.page = page

    @classmethod
    def from_config(cls, config: DriftConfig, engine: Engine, reference_model: str) -> AgreementDrift:
        """Calibrated as ``[drift]`` says (``arl0``, ``odds_ratio``, ``margin``), warm-up capped at
        `MAX_WARMUP` comparisons."""
        return cls(engine, reference_model, arl0=config.arl0, warmup=min(config.warmup, MAX_WARMUP),
                   odds_ratio=config.odds_ratio, margin=config.margin)

    def update(self, now: datetime | None = None) -> list[DriftEvent]:
        """Feed every comparison stored since the last call; return the agreement drops found."""
        found: list[DriftEvent] = []
        while True:
            with self.engine.begin() as conn:
                last_id, charts = self._load(conn)
                rows = conn.execute(
                    select(shadow_comparisons.c.id, shadow_comparisons.c.record_id, shadow_comparisons.c.agree,
                           records.c.model, records.c.ts)
                    .join(records, records.c.id == shadow_comparisons.c.record_id)
                    .where(shadow_comparisons.c.reference_model == self.reference_model,
                           shadow_comparisons.c.id > last_id, shadow_comparisons.c.agree.is_not(None))
                    .order_by(shadow_comparisons.c.id)
                    .limit(self.page)
                ).all()
                if not rows:
                    return found
                events = self._feed(charts, rows)
                stored_at = now or datetime.now(UTC)
                self._store(conn, events, stored_at)
                self._save(conn, rows[-1].id, charts, stored_at)
            found += events
            if len(rows) < self.page:
                return found

    # -- internals ---------------------------------------------------------------------------------------

    def _chart(self) -> BernoulliCUSUM:
        return BernoulliCUSUM(self.arl0, self.warmup, self.odds_ratio, self.margin)

    def _feed(self, charts: dict[str, Chart], rows: list[Any]) -> list[DriftEvent]:
        by_model: dict[str, list[Any]] = {}
        for row in rows:
            by_model.setdefault(row.model, []).append(row)
        events = []
        for model, mine in by_model.items():
            chart = charts.get(model)
            if chart is None:
                chart = charts[model] = self._chart()
            for change in chart.update_many(np.array([1.0 if r.agree else 0.0 for r in mine])):
                if change.direction != "down":
                    log.info("shadow agreement of %s with %s rose: %s -> %s", model, self.reference_model,
                             change.before, change.after)
                    continue
                at = mine[change.index]
                ts = at.ts if at.ts.tzinfo is not None else at.ts.replace(tzinfo=UTC)
                events.append(DriftEvent(stream_of(model), SIGNAL, chart.kind, ts, at.record_id, "down",
                                         change.before, change.after,
                                         {**change.details, "reference_model": self.reference_model}))
                log.warning("shadow agreement of %s with %s dropped from %.1f%% to %.1f%% (%s)", model,
                            self.reference_model, 100 * change.before["rate"], 100 * change.after["rate"],
                            at.record_id)
        return events

    def _store(self, conn: Connection, events: list[DriftEvent], now: datetime) -> None:
        if not events:
            return
        rows = [{"stream": e.stream, "signal": e.signal, "detector": e.detector, "detected_at": e.detected_at,
                 "created_at": now, "record_id": e.record_id, "before": _json(e.before),
                 "after": _json(e.after), "details": _json({**e.details, "direction": e.direction})}
                for e in events]
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(dialect.insert(drift_events).on_conflict_do_nothing(), rows)

    def _load(self, conn: Connection) -> tuple[int, dict[str, Chart]]:
        blob = conn.scalar(select(detector_state.c.state)
                           .where(detector_state.c.key == state_key(self.reference_model)))
        if blob is None:
            return 0, {}
        data = orjson.loads(zlib.decompress(bytes(blob)))
        if data.get("format") != STATE_FORMAT:
            log.warning("shadow agreement state of %s in unknown format %r: starting afresh",
                        self.reference_model, data.get("format"))
            return 0, {}
        return int(data["last_id"]), {model: Chart.from_state(s) for model, s in data["charts"].items()}

    def _save(self, conn: Connection, last_id: int, charts: dict[str, Chart], now: datetime) -> None:
        data = {"format": STATE_FORMAT, "last_id": last_id,
                "charts": {model: chart.state() for model, chart in charts.items()}}
        key = state_key(self.reference_model)
        conn.execute(delete(detector_state).where(detector_state.c.key == key))
        conn.execute(insert(detector_state).values(key=key, state=zlib.compress(orjson.dumps(data), 6),
                                                   updated_at=now))
