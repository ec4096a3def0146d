"""Alert rules: each a small class that reads the database and says which scopes are firing now, and why.

A rule is ``fetch`` (its SQL, the only part that touches the database) followed by ``decide`` (a pure
function of what was fetched, unit-tested without a database). `Rule.evaluate` returns ``{scope: Evidence}``
for the scopes firing at ``now``; a scope missing from the answer is not firing. Rules read tables, never
pipeline memory, so any daemon can evaluate them and a restart loses nothing.

Scopes are strings: ``global``, ``model=<name>`` or ``app=<name>`` (``app=-`` for records without an app).

Adding a rule is one class: subclass `Rule` (or `RateRule` for "fraction of records that …"), set ``kind``,
write ``fetch`` and ``decide``, decorate it with ``@register``; then ``[alerts.rules.NAME] kind = "…"`` in
monitor.toml turns it on.

Rules over traffic volume (rates, latency, dead-letter share, no traffic) read the per-minute counters of
`stream_minutes` (`monitor.aggregate`), never raw `records`: an evaluation costs the same at 10 or 20 000
records per second. Their windows therefore start on a minute boundary — the minute holding ``now - window``
— so a window is between ``window`` and ``window`` + 1 minute long. Raw `records` are read only for a few
example ids, within the minutes the counters point at.

>>> from monitor.config import AlertRuleConfig
>>> rule = ErrorRate("error_rate", AlertRuleConfig(kind="error_rate", threshold=0.1, min_samples=10))
>>> rule.decide({"current": {"global": (20, 5)}, "baseline": {}}, now=None)["global"].summary
'error rate 25.0% over the last 10m (5 of 20 records), above 10.0%'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, Connection, case, func, select

from monitor.aggregate import TOXIC_AT, in_response, minute_of, quantile
from monitor.config import AlertRuleConfig, AlertsConfig
from monitor.review.estimates import INCORRECT, Proportion, accuracy_estimates, significantly_lower, wilson
from monitor.storage.db import as_utc as _utc
from monitor.storage.schema import (
    STREAM_LATENCY_COLUMNS,
    consumer_progress,
    dead_letters,
    detections,
    drift_events,
    labels,
    records,
    samples,
    shadow_comparisons,
    stream_minutes,
)

GLOBAL = "global"
EXAMPLES = 3


@dataclass(frozen=True, slots=True)
class Evidence:
    """The numbers that prove an alert: what was seen, against what, over which window and sample.

    Never holds record text — only ids, counts and statistics — so it is safe to send to a chat channel.
    """

    summary: str
    value: float
    threshold: float
    window_s: float
    sample_size: int
    before: Mapping[str, float] | None = None
    after: Mapping[str, float] | None = None
    examples: tuple[str, ...] = ()
    look: str = ""
    """Where to look next: a SQL query or a CLI command."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["examples"] = list(self.examples)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Evidence:
        return cls(**{**data, "examples": tuple(data.get("examples", ()))})


class Rule:
    """A named, configured condition over the database. Subclasses set ``kind`` and implement
    ``fetch(conn, now)`` and ``decide(fetched, now)``; ``examples`` is optional."""

    kind: ClassVar[str]

    def __init__(self, name: str, config: AlertRuleConfig, *, group_id: str = "watchkeeper") -> None:
        self.name = name
        self.config = config
        self.group_id = group_id

    @property
    def severity(self) -> str:
        return self.config.severity

    @property
    def window(self) -> timedelta:
        return self.config.window

    def evaluate(self, conn: Connection, now: datetime) -> dict[str, Evidence]:
        firing = self.decide(self.fetch(conn, now), now)
        return {
            scope: evidence if evidence.examples else replace(
                evidence, examples=tuple(self.examples(conn, now, scope)))
            for scope, evidence in firing.items()
        }

    def fetch(self, conn: Connection, now: datetime) -> Any:
        raise NotImplementedError

    def decide(self, fetched: Any, now: datetime) -> dict[str, Evidence]:
        raise NotImplementedError

    def examples(self, conn: Connection, now: datetime, scope: str) -> Sequence[str]:
        return ()


RULES: dict[str, type[Rule]] = {}


def register(cls: type[Rule]) -> type[Rule]:
    """Make a rule class available to ``kind = "..."`` in monitor.toml."""
    RULES[cls.kind] = cls
    return cls


def build_rules(config: AlertsConfig, *, group_id: str = "watchkeeper") -> list[Rule]:
    """The enabled rules of ``config``, in name order."""
    return [
        RULES[rule.kind](name, rule, group_id=group_id)
        for name, rule in sorted(config.rules.items())
        if rule.enabled
    ]


# --- scopes and small helpers ----------------------------------------------------------------------------

def _scope_columns(scope: str) -> list[Any]:
    return {"global": [], "model": [records.c.model], "app": [records.c.app]}[scope]


def _scope_label(scope: str, row: Sequence[Any]) -> str:
    if scope == "global":
        return GLOBAL
    return f"{scope}={row[0] if row[0] is not None else '-'}"


def _scope_filter(scope_label: str) -> ColumnElement[bool] | None:
    """The records filter for a scope label (None for global)."""
    if scope_label == GLOBAL:
        return None
    key, _, value = scope_label.partition("=")
    column = records.c.model if key == "model" else records.c.app
    return column.is_(None) if key == "app" and value == "-" else column == value


def _sql_filter(scope_label: str) -> str:
    """The same filter as `_scope_filter`, as SQL text for the "where to look" hint."""
    if scope_label == GLOBAL:
        return ""
    key, _, value = scope_label.partition("=")
    if key == "app" and value == "-":
        return " AND app IS NULL"
    return f" AND {key} = {_quote(value)}"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _since(now: datetime, window: timedelta) -> str:
    return (now - window).strftime("%Y-%m-%d %H:%M:%S+00")


def human_duration(seconds: float) -> str:
    """``600`` → ``10m``; ``5400`` → ``1h30m``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    parts = []
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def _grouped(conn: Connection, scope: str, columns: Iterable[Any], *where: Any) -> dict[str, tuple[Any, ...]]:
    keys = _scope_columns(scope)
    stmt = select(*keys, *columns).where(*where)
    if keys:
        stmt = stmt.group_by(*keys)
    return {_scope_label(scope, row): tuple(row[len(keys):]) for row in conn.execute(stmt)}


# --- the per-minute counters (stream_minutes) -----------------------------------------------------------

_sm = stream_minutes.c
MINUTE = timedelta(minutes=1)


def _window_start(now: datetime, window: timedelta) -> datetime:
    """First minute of a window ending at ``now``: the one holding ``now - window``."""
    return minute_of(now - window)


def _minute_filter(scope_label: str) -> list[ColumnElement[bool]]:
    """The `stream_minutes` filter for a scope label (app ``-`` is stored as '')."""
    if scope_label == GLOBAL:
        return []
    key, _, value = scope_label.partition("=")
    if key == "model":
        return [_sm.model == value]
    return [_sm.app == ("" if value == "-" else value)]


def _minute_sums(conn: Connection, scope: str, columns: Iterable[Any], *where: Any) -> dict[str, tuple[Any, ...]]:
    """``columns`` (aggregates over `stream_minutes`) per scope label, over the rows matching ``where``."""
    keys = {"global": [], "model": [_sm.model], "app": [_sm.app]}[scope]
    stmt = select(*keys, *columns).where(*where)
    if keys:
        stmt = stmt.group_by(*keys)
    out = {}
    for row in conn.execute(stmt):
        label = GLOBAL if not keys else f"{scope}={row[0] if row[0] not in (None, '') else '-'}"
        out[label] = tuple(row[len(keys):])
    return out


def _ids_in_minutes(conn: Connection, scope: str, minutes: Iterable[datetime], *where: Any,
                    order: Any = None) -> list[tuple[Any, str]]:
    """``(order value, id)`` of up to `EXAMPLES` records per minute of ``minutes`` that match ``where``: each
    query reads one minute of records through the ``ts`` index, so the work is bounded by the traffic of
    a few minutes whatever the window."""
    scoped = _scope_filter(scope)
    order = records.c.ts if order is None else order
    found: list[tuple[Any, str]] = []
    for minute in minutes:
        stmt = (select(order, records.c.id)
                .where(records.c.ts >= minute, records.c.ts < minute + MINUTE, *where,
                       *([scoped] if scoped is not None else []))
                .order_by(order.desc()).limit(EXAMPLES))
        found += [(row[0], row[1]) for row in conn.execute(stmt)]
    return found


def _recent_ids(conn: Connection, scope: str, start: datetime, counter: str, *where: Any) -> list[str]:
    """The newest `EXAMPLES` records matching ``where`` since ``start``, looked for only in the newest minutes
    whose ``counter`` says they hold some."""
    minutes = conn.scalars(
        select(_sm.minute).where(_sm.minute >= start, _sm[counter] > 0, *_minute_filter(scope))
        .group_by(_sm.minute).order_by(_sm.minute.desc()).limit(EXAMPLES))
    found: list[str] = []
    for minute in minutes:
        found += [rid for _, rid in _ids_in_minutes(conn, scope, [minute], *where)]
        if len(found) >= EXAMPLES:
            break
    return found[:EXAMPLES]


def _exceeds(value: float, floor: float, base: float | None, factor: float, spike: bool) -> bool:
    """Above the absolute floor, and — for spike rules — above factor × baseline when a baseline exists.
    A spike rule with no usable baseline fires on the floor alone, and only when the floor is set."""
    if value <= floor:
        return False
    if not spike:
        return True
    if base is None:
        return floor > 0
    return value > base * factor


# --- rate rules: the fraction of records that … ----------------------------------------------------------

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
    """Share of scored responses with toxicity ≥ ``score``; ``threshold`` is that share (0.05 = 5 %)."""

    kind = "toxicity_rate"
    what = "toxic response rate"
    hit_sql = "response_toxicity >= <score>"
    counted = "toxicity_scored"
    hits = "toxic"

    def __init__(self, name: str, config: AlertRuleConfig, *, group_id: str = "watchkeeper") -> None:
        if config.score != TOXIC_AT:
            raise ValueError(f"alerts.rules.{name}: score must be {TOXIC_AT} — `stream_minutes` counts responses "
                             f"with toxicity >= {TOXIC_AT} (detectors.drift.signals.TOXIC_AT); got {config.score}")
        super().__init__(name, config, group_id=group_id)

    def hit(self) -> ColumnElement[bool]:
        return records.c.response_toxicity >= self.config.score

    def look(self, scope: str, now: datetime | None) -> str:
        return super().look(scope, now).replace("<score>", f"{self.config.score:g}")


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


# --- latency ---------------------------------------------------------------------------------------------

@register
class LatencyP95(Rule):
    """p95 of ``latency_ms`` over the window: fires above ``threshold`` ms and, with ``baseline``, above
    ``factor`` × the baseline window's p95. ``fetch`` gives ``{scope: (n, p95)}`` for both windows.

    The p95 is estimated from the latency histograms of `stream_minutes` (`monitor.aggregate.quantile`):
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


# --- leaks: any secret or PII in a response --------------------------------------------------------------

_EXAMPLE_CANDIDATES = 20 * EXAMPLES
"""Newest findings of a minute read when looking for example leaks (those only in the prompt are skipped)."""


class LeakRule(Rule):
    """Fires when more than ``threshold`` (default 0: any) records in the window have a ``detector`` finding
    in the response. ``fetch`` gives ``{scope: records}``.

    The whole minutes of the window are summed from `stream_minutes` (``counter``), which the pipeline fills
    in the transaction that stores the detections; only the minute the window starts in is counted from
    `detections` itself, so an evaluation reads at most one minute of findings whatever the window and the
    traffic, and the window is exact to the record. Example records are looked up only for a firing scope."""

    detector: ClassVar[str]
    counter: ClassVar[str]
    what: ClassVar[str]

    def fetch(self, conn: Connection, now: datetime) -> dict[str, int]:
        since = now - self.window
        head = minute_of(since)
        counts = {scope: int(n) for scope, (n,) in _minute_sums(
            conn, self.config.scope, [func.sum(_sm[self.counter])], _sm.minute > head).items() if n}
        keys = _scope_columns(self.config.scope)
        partial = (select(*keys, detections.c.details)
                   .select_from(detections.join(records, records.c.id == detections.c.record_id))
                   .where(records.c.ts > since, records.c.ts < head + MINUTE,
                          detections.c.detector == self.detector, detections.c.flagged.is_(True)))
        for row in conn.execute(partial):
            if in_response(row[-1]):
                scope = _scope_label(self.config.scope, row)
                counts[scope] = counts.get(scope, 0) + 1
        return counts

    def decide(self, fetched: Mapping[str, int], now: datetime | None) -> dict[str, Evidence]:
        cfg, firing = self.config, {}
        for scope, count in fetched.items():
            if count <= cfg.threshold:
                continue
            window = human_duration(cfg.window.total_seconds())
            since = _since(now, cfg.window) if now else "<window start>"
            firing[scope] = Evidence(
                summary=f"{count} response(s) with {self.what} in the last {window}",
                value=count, threshold=cfg.threshold, window_s=cfg.window.total_seconds(),
                sample_size=count, after={"records": count},
                look=("SELECT r.id, r.ts, r.model, r.app, d.details FROM detections d JOIN records r "
                      f"ON r.id = d.record_id WHERE d.detector = '{self.detector}' AND d.flagged "
                      f"AND r.ts > '{since}'{_sql_filter(scope).replace(' AND ', ' AND r.')} "
                      "ORDER BY r.ts DESC LIMIT 50;"),
            )
        return firing

    def examples(self, conn: Connection, now: datetime, scope: str) -> Sequence[str]:
        """The newest records of ``scope`` with the finding in the response, from the newest minutes whose
        counter says they hold one (each minute read through the ``ts`` index)."""
        since = now - self.window
        minutes = conn.scalars(
            select(_sm.minute).where(_sm.minute >= minute_of(since), _sm[self.counter] > 0, *_minute_filter(scope))
            .group_by(_sm.minute).order_by(_sm.minute.desc()).limit(EXAMPLES))
        scoped = _scope_filter(scope)
        found: list[str] = []
        for minute in map(_utc, minutes):
            stmt = (select(records.c.id, detections.c.details)
                    .select_from(detections.join(records, records.c.id == detections.c.record_id))
                    .where(records.c.ts >= max(minute, since), records.c.ts < minute + MINUTE,
                           detections.c.detector == self.detector, detections.c.flagged.is_(True),
                           *([scoped] if scoped is not None else []))
                    .order_by(records.c.ts.desc()).limit(_EXAMPLE_CANDIDATES))
            found += [record_id for record_id, details in conn.execute(stmt) if in_response(details)]
            if len(found) >= EXAMPLES:
                break
        return found[:EXAMPLES]


@register
class SecretInResponse(LeakRule):
    """A credential (API key, private key, token) in a model response. Critical by default: the secrets
    detector has almost no false positives on prose, and a leaked key must be rotated now."""

    kind = "secret_in_response"
    detector = "secrets"
    counter = "secret_in_response"
    what = "a secret"


@register
class PiiInResponse(LeakRule):
    """Personal data (e-mail, phone, card, SSN…) in a model response. A warning by default: pattern-based
    PII detection flags some legitimate answers (a support address), so it should not page at night."""

    kind = "pii_in_response"
    detector = "pii"
    counter = "pii_in_response"
    what = "personal data"


# --- drift -----------------------------------------------------------------------------------------------

def stream_scope(stream: str, scope: str) -> str:
    """Map a drift stream (``model=m1,app=*`` or ``*``) to a scope label of the given kind."""
    parts = dict(part.split("=", 1) for part in stream.split(",") if "=" in part)
    value = parts.get(scope)
    if scope == "global" or value in (None, "*"):
        return GLOBAL
    return f"{scope}={value}"


def _numbers(stats: Any) -> dict[str, float] | None:
    if not isinstance(stats, Mapping):
        return None
    return {k: float(v) for k, v in stats.items() if isinstance(v, int | float) and not isinstance(v, bool)}


@register
class Drift(Rule):
    """Fires for a scope while drift events were detected in it within the window. ``fetch`` gives rows
    ``(stream, signal, detector, record_id, before, after)``, newest first."""

    kind = "drift"
    max_rows: ClassVar[int] = 1000

    def fetch(self, conn: Connection, now: datetime) -> list[tuple[Any, ...]]:
        t = drift_events.c
        stmt = (select(t.stream, t.signal, t.detector, t.record_id, t.before, t.after)
                .where(t.created_at > now - self.window).order_by(t.id.desc()).limit(self.max_rows))
        return [tuple(row) for row in conn.execute(stmt)]

    def decide(self, fetched: Sequence[tuple[Any, ...]], now: datetime | None) -> dict[str, Evidence]:
        by_scope: dict[str, list[tuple[Any, ...]]] = {}
        for row in fetched:
            by_scope.setdefault(stream_scope(row[0], self.config.scope), []).append(row)
        cfg, firing = self.config, {}
        for scope, events in by_scope.items():
            if len(events) <= cfg.threshold:
                continue
            stream, signal, detector, _, before, after = events[0]
            signals = sorted({e[1] for e in events})
            since = _since(now, cfg.window) if now else "<window start>"
            firing[scope] = Evidence(
                summary=(f"{len(events)} drift event(s) in the last {human_duration(cfg.window.total_seconds())}"
                         f" on {', '.join(signals)}; latest: {signal} on {stream} ({detector})"),
                value=len(events), threshold=cfg.threshold, window_s=cfg.window.total_seconds(),
                sample_size=len(events), before=_numbers(before), after=_numbers(after),
                examples=tuple(dict.fromkeys(e[3] for e in events if e[3]))[:EXAMPLES],
                look=(f"SELECT * FROM drift_events WHERE created_at > '{since}' "
                      f"AND stream = {_quote(stream)} ORDER BY id DESC;"),
            )
        return firing


# --- quality from reviewers' labels ----------------------------------------------------------------------

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


# --- agreement with a shadow reference model -------------------------------------------------------------

def _agreement(n: int, agreed: int) -> Proportion:
    low, high = wilson(agreed, n)
    return Proportion(agreed / n, low, high, n, float(n))


def _since_option(window: timedelta) -> str:
    """A window as ``watchkeeper shadow status --since`` takes it (one unit)."""
    seconds = window.total_seconds()
    return f"{seconds / 3600:g}h" if seconds % 3600 == 0 else f"{math.ceil(seconds / 60)}m"


@register
class ShadowAgreement(Rule):
    """A production model agrees less with its shadow reference (`monitor.shadow`): over ``window`` its share
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


# --- pipeline health -------------------------------------------------------------------------------------

@register
class DeadLetterRate(Rule):
    """Share of messages rejected as dead letters over the window (global). ``fetch`` gives
    ``(dead, accepted)``: dead letters received since the window start, and records (from `stream_minutes`)
    since the minute holding it."""

    kind = "dead_letter_rate"

    def fetch(self, conn: Connection, now: datetime) -> tuple[int, int]:
        dead = conn.scalar(select(func.count()).where(dead_letters.c.received_at > now - self.window)) or 0
        accepted = conn.scalar(select(func.sum(_sm.n)).where(_sm.minute >= _window_start(now, self.window))) or 0
        return int(dead), int(accepted)

    def decide(self, fetched: tuple[int, int], now: datetime | None) -> dict[str, Evidence]:
        dead, accepted = fetched
        total = dead + accepted
        cfg = self.config
        if total < cfg.min_samples or dead / total <= cfg.threshold:
            return {}
        rate = dead / total
        since = _since(now, cfg.window) if now else "<window start>"
        return {GLOBAL: Evidence(
            summary=(f"dead-letter rate {rate:.1%} over the last {human_duration(cfg.window.total_seconds())} "
                     f"({dead} rejected of {total} messages), above {cfg.threshold:.1%}"),
            value=rate, threshold=cfg.threshold, window_s=cfg.window.total_seconds(), sample_size=total,
            after={"rate": rate, "dead": dead, "accepted": accepted},
            look=(f"SELECT topic, partition, \"offset\", reason FROM dead_letters WHERE received_at > '{since}' "
                  "ORDER BY id DESC LIMIT 50;"),
        )}


@register
class ConsumerLag(Rule):
    """The consumer group is behind: total lag above ``threshold`` messages, or any lag at all while no
    progress was recorded for ``window`` (stuck). Global and critical by default. ``fetch`` gives rows
    ``(topic, partition, committed, highwater, updated_at)`` of this daemon's group."""

    kind = "consumer_lag"

    def fetch(self, conn: Connection, now: datetime) -> list[tuple[Any, ...]]:
        t = consumer_progress.c
        stmt = select(t.topic, t.partition, t.committed, t.highwater, t.updated_at).where(
            t.group_id == self.group_id)
        return [tuple(row) for row in conn.execute(stmt)]

    def decide(self, fetched: Sequence[tuple[Any, ...]], now: datetime) -> dict[str, Evidence]:
        lagging = [(topic, part, max(0, (high or committed) - committed), _utc(updated))
                   for topic, part, committed, high, updated in fetched]
        lagging = [row for row in lagging if row[2] > 0]
        if not lagging:
            return {}
        total = sum(row[2] for row in lagging)
        oldest = min(row[3] for row in lagging)
        stalled_s = (now - oldest).total_seconds()
        cfg = self.config
        stuck = stalled_s >= cfg.window.total_seconds()
        if total <= cfg.threshold and not stuck:
            return {}
        worst = max(lagging, key=lambda row: row[2])
        summary = (f"consumer group {self.group_id} is {total:,} messages behind on {len(lagging)} partition(s)"
                   f" (worst {worst[0]}[{worst[1]}]: {worst[2]:,})")
        if stuck:
            summary += f"; no progress for {human_duration(stalled_s)}"
        return {GLOBAL: Evidence(
            summary=summary, value=total, threshold=cfg.threshold, window_s=cfg.window.total_seconds(),
            sample_size=len(lagging), after={"lag": total, "stalled_s": stalled_s},
            look=("SELECT *, highwater - committed AS lag FROM consumer_progress "
                  f"WHERE group_id = {_quote(self.group_id)} ORDER BY lag DESC;"),
        )}


@register
class NoTraffic(Rule):
    """A scope that used to have traffic (``min_samples`` records in the ``baseline`` before its last
    record) has received nothing for ``window``. ``fetch`` gives ``{scope: (last_ts, n_before)}``; the
    count is only taken for scopes already quiet. Looks back at most ``lookback`` for the last record.
    Both come from `stream_minutes`: the baseline count starts on the minute holding its start."""

    kind = "no_traffic"
    lookback: ClassVar[timedelta] = timedelta(days=7)

    def fetch(self, conn: Connection, now: datetime) -> dict[str, tuple[datetime, int]]:
        last = _minute_sums(conn, self.config.scope, [func.max(_sm.last_ts)],
                            _sm.minute >= minute_of(now - self.lookback))
        baseline = self.config.baseline or timedelta(hours=1)
        out = {}
        for scope, (last_ts,) in last.items():
            if last_ts is None:
                continue
            last_ts = _utc(last_ts)
            n = 0
            if now - last_ts >= self.window:
                n = conn.scalar(select(func.sum(_sm.n)).where(
                    _sm.minute >= minute_of(last_ts - baseline), _sm.minute <= last_ts,
                    *_minute_filter(scope))) or 0
            out[scope] = (last_ts, int(n))
        return out

    def decide(self, fetched: Mapping[str, tuple[datetime, int]], now: datetime) -> dict[str, Evidence]:
        cfg, firing = self.config, {}
        baseline = cfg.baseline or timedelta(hours=1)
        for scope, (last_ts, n_before) in fetched.items():
            quiet_s = (now - last_ts).total_seconds()
            if quiet_s < cfg.window.total_seconds() or n_before < cfg.min_samples:
                continue
            firing[scope] = Evidence(
                summary=(f"no records for {human_duration(quiet_s)} (last at {last_ts:%Y-%m-%d %H:%M:%S} UTC); "
                         f"{n_before} records in the {human_duration(baseline.total_seconds())} before"),
                value=quiet_s, threshold=cfg.window.total_seconds(), window_s=cfg.window.total_seconds(),
                sample_size=n_before, before={"records": n_before}, after={"records": 0},
                look="SELECT * FROM consumer_progress ORDER BY updated_at; -- and: watchkeeper logs / kafka lag",
            )
        return firing
