"""Rate rules: the fraction of records that are toxic, refused, errors or prompt-injection attempts —
`RateRule` and its kinds.

They share one shape (hits over counted records from `stream_minutes`, an absolute floor, an optional
spike against the baseline window before), so a new "fraction of records that …" rule is a few class
attributes here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, Connection, func, select

from detectors.config import TOXIC_AT
from monitor.alerts.evidence import Evidence
from monitor.alerts.rules.base import (
    Rule,
    _exceeds,
    _minute_sums,
    _recent_ids,
    _since,
    _sm,
    _sql_filter,
    _window_start,
    register,
)
from monitor.config import AlertRuleConfig
from monitor.durations import human_duration
from monitor.ingest.steps.aggregate import minute_of
from monitor.storage.schema import detections, records


class RateRule(Rule):
    """Fires when the fraction of counted records that are hits exceeds ``threshold`` over ``window`` with
    at least ``min_samples`` counted records; with ``baseline`` set it must also exceed ``factor`` × the
    rate of the ``baseline`` window just before (a spike). ``fetch`` gives ``{scope: (n, hits)}``.

    Counts come from `stream_minutes`: ``counted`` and ``hits`` name its counter columns. The window
    starts on the minute holding ``now - window``; the baseline is the ``baseline`` before that minute."""

    what: ClassVar[str]
    counted: ClassVar[str] = "n"
    """The `stream_minutes` column counting the records the rate is over (e.g. those a detector scored)."""
    hits: ClassVar[str]
    """The `stream_minutes` column counting the hits among them."""

    def hit(self) -> ColumnElement[bool]:
        """The same hits as a `records` filter, for example ids."""
        raise NotImplementedError

    def fetch(self, conn: Connection, now: datetime) -> dict[str, dict[str, tuple[int, int]]]:
        start = _window_start(now, self.window)
        columns = [func.sum(_sm[self.counted]), func.sum(_sm[self.hits])]
        current = _minute_sums(conn, self.config.scope, columns, _sm.minute >= start)
        baseline: dict[str, tuple[Any, ...]] = {}
        if self.config.baseline is not None:
            baseline = _minute_sums(conn, self.config.scope, columns,
                                    _sm.minute >= minute_of(start - self.config.baseline), _sm.minute < start)
        as_ints = lambda rows: {s: (int(n), int(k or 0)) for s, (n, k) in rows.items() if n}  # noqa: E731
        return {"current": as_ints(current), "baseline": as_ints(baseline)}

    def decide(self, fetched: Mapping[str, Mapping[str, tuple[int, int]]], now: datetime | None
               ) -> dict[str, Evidence]:
        cfg, firing = self.config, {}
        for scope, (n, hits) in fetched["current"].items():
            if n < cfg.min_samples:
                continue
            rate = hits / n
            base_n, base_hits = fetched["baseline"].get(scope, (0, 0))
            base = base_hits / base_n if base_n >= cfg.min_samples else None
            if not _exceeds(rate, cfg.threshold, base, cfg.factor, cfg.baseline is not None):
                continue
            summary = (f"{self.what} {rate:.1%} over the last {human_duration(cfg.window.total_seconds())} "
                       f"({hits} of {n} records), above {cfg.threshold:.1%}")
            if base is not None:
                summary += f" and {cfg.factor:g}× the baseline {base:.1%}"
            firing[scope] = Evidence(
                summary=summary, value=rate, threshold=cfg.threshold, window_s=cfg.window.total_seconds(),
                sample_size=n,
                before={"rate": base, "n": base_n} if base is not None else None,
                after={"rate": rate, "n": n, "hits": hits},
                look=self.look(scope, now),
            )
        return firing

    def look(self, scope: str, now: datetime | None) -> str:
        since = _since(now, self.window) if now else "<window start>"
        return (f"SELECT id, ts, model, app FROM records WHERE ts > '{since}'{_sql_filter(scope)} "
                f"AND {self.hit_sql} ORDER BY ts DESC LIMIT 50;")

    hit_sql: ClassVar[str]

    def examples(self, conn: Connection, now: datetime, scope: str) -> Sequence[str]:
        return _recent_ids(conn, scope, _window_start(now, self.window), self.hits, self.hit())


@register
class ToxicityRate(RateRule):
    """Share of scored responses that are toxic — score at or above ``[detectors.toxicity] threshold``, the
    cut-off the `stream_minutes` counters use; ``threshold`` is that share (0.05 = 5 %)."""

    kind = "toxicity_rate"
    what = "toxic response rate"
    hit_sql = "response_toxicity >= <score>"
    counted = "toxicity_scored"
    hits = "toxic"

    def __init__(self, name: str, config: AlertRuleConfig, *, group_id: str = "watchkeeper",
                 toxic_at: float = TOXIC_AT) -> None:
        """``toxic_at``: ``[detectors.toxicity] threshold``. The old per-rule ``score`` key, when given, must
        equal it (the counters cannot count another cut-off)."""
        if config.score is not None and config.score != toxic_at:
            raise ValueError(f"alerts.rules.{name}: score must be {toxic_at:g} — `stream_minutes` counts responses "
                             f"with toxicity >= [detectors.toxicity] threshold ({toxic_at:g}); got {config.score}; "
                             "leave score out, or change the detector's threshold")
        super().__init__(name, config, group_id=group_id)
        self.toxic_at = toxic_at

    def hit(self) -> ColumnElement[bool]:
        return records.c.response_toxicity >= self.toxic_at

    def look(self, scope: str, now: datetime | None) -> str:
        return super().look(scope, now).replace("<score>", f"{self.toxic_at:g}")


@register
class RefusalRate(RateRule):
    """Share of responses the refusal detector flagged; a spike against the hour before by default."""

    kind = "refusal_rate"
    what = "refusal rate"
    hit_sql = "refusal"
    counted = "refusal_scored"
    hits = "refusals"

    def hit(self) -> ColumnElement[bool]:
        return records.c.refusal.is_(True)


@register
class ErrorRate(RateRule):
    """Share of records with ``status = 'error'``."""

    kind = "error_rate"
    what = "error rate"
    hit_sql = "status = 'error'"
    hits = "errors"

    def hit(self) -> ColumnElement[bool]:
        return records.c.status == "error"


@register
class InjectionRate(RateRule):
    """Share of judged prompts the prompt_injection detector flagged (score at or above ``[detectors.injection]
    threshold``): someone probing the model with attack prompts, or a poisoned document pasted into many."""

    kind = "injection_rate"
    what = "prompt-injection rate"
    hit_sql = ("id IN (SELECT record_id FROM detections WHERE detector = 'prompt_injection' AND flagged)")
    counted = "injection_scored"
    hits = "injections"

    def hit(self) -> ColumnElement[bool]:
        flagged = select(detections.c.record_id).where(detections.c.detector == "prompt_injection",
                                                       detections.c.flagged.is_(True))
        return records.c.id.in_(flagged)
