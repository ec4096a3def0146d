"""Reference server rules: the shadow reference (a vLLM server) is down, saturated, or slower than it was.

They read ``reference_health`` (one row per scrape, `monitor.jobs.reference_health`), so they are silent
without an HTTP reference. Their scope is the reference, ``reference=<label>`` (its name, else its URL),
whatever ``scope`` says: a reference serves every production model alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, case, func, select

from monitor.alerts.evidence import Evidence
from monitor.alerts.rules.base import Rule, _quote, _since, register
from monitor.durations import human_duration
from monitor.storage.db import as_utc
from monitor.storage.schema import reference_health

_rh = reference_health.c


def scope_of(reference: str) -> str:
    """The alert scope of a reference's label."""
    return f"reference={reference}"


def _look(reference: str, since: str) -> str:
    return (f"SELECT * FROM reference_health WHERE reference = {_quote(reference)} AND ts > '{since}' "
            "ORDER BY ts DESC;")


@register
class ReferenceDown(Rule):
    """A reference failed every scrape of the window (``/health`` not 200, or unreachable), and at least
    ``min_samples`` scrapes failed since it was last up. ``fetch`` gives ``{reference: (failed scrapes since it
    was last up, up scrapes in the window, last error, last up at)}`` for the references scraped in the window;
    one good scrape in the window keeps it quiet, so it resolves with the first answer — and only then: a
    window that happens to hold fewer scrapes (a busy scheduler) does not resolve a reference that never
    answered.

    >>> from monitor.config import AlertRuleConfig
    >>> rule = ReferenceDown("reference_down", AlertRuleConfig(kind="reference_down", window="1m", min_samples=2))
    >>> rule.decide({"http://gpu-1:8000": (4, 0, "unreachable: ConnectError", None)}, now=None)[
    ...     "reference=http://gpu-1:8000"].summary[:80]
    'reference http://gpu-1:8000 is down: 4 failed health checks, none answered in th'
    """

    kind = "reference_down"

    def fetch(self, conn: Connection, now: datetime) -> dict[str, tuple[int, int, str | None, datetime | None]]:
        since = now - self.window
        stmt = (select(_rh.reference, func.count(), func.sum(case((_rh.up, 1), else_=0)))
                .where(_rh.ts > since).group_by(_rh.reference))
        out = {}
        for reference, n, up in conn.execute(stmt):
            error = conn.scalar(select(_rh.error).where(_rh.reference == reference, _rh.ts > since,
                                                        _rh.up.is_(False)).order_by(_rh.ts.desc()).limit(1))
            last_up = conn.scalar(select(func.max(_rh.ts)).where(_rh.reference == reference, _rh.up.is_(True)))
            failed = n
            if not up:  # down through the window: count every failure since it last answered
                failed_since = select(func.count()).where(_rh.reference == reference, _rh.up.is_(False))
                if last_up is not None:
                    failed_since = failed_since.where(_rh.ts > last_up)
                failed = max(int(conn.scalar(failed_since) or 0), int(n))
            out[reference] = (int(failed), int(up or 0), error, as_utc(last_up) if last_up else None)
        return out

    def decide(self, fetched: Mapping[str, tuple[int, int, str | None, datetime | None]],
               now: datetime | None) -> dict[str, Evidence]:
        cfg, firing = self.config, {}
        for reference, (n, up, error, last_up) in fetched.items():
            if n < cfg.min_samples or up > 0:
                continue
            summary = (f"reference {reference} is down: {n} failed health checks, none answered in the last "
                       f"{human_duration(cfg.window.total_seconds())} ({error or 'no answer'})")
            if last_up is not None:
                summary += f"; last up at {last_up:%Y-%m-%d %H:%M:%S} UTC"
            firing[scope_of(reference)] = Evidence(
                summary=summary, value=float(n), threshold=float(cfg.min_samples),
                window_s=cfg.window.total_seconds(), sample_size=n, after={"failed_checks": n},
                look=_look(reference, _since(now, cfg.window) if now else "<window start>"),
            )
        return firing


@register
class ReferenceSaturated(Rule):
    """A reference was saturated on every scrape of the window (at least ``min_samples`` up scrapes): more than
    ``threshold`` requests queued (``vllm:num_requests_waiting``), or KV-cache usage at or above ``kv_cache``
    (0–1). Production traffic on that server waits; shadow replay has already backed off
    (`inference.guest`). ``fetch`` gives ``{reference: (scrapes, saturated, max waiting, max kv usage)}``.

    >>> from monitor.config import AlertRuleConfig
    >>> rule = ReferenceSaturated("reference_saturated", AlertRuleConfig(
    ...     kind="reference_saturated", window="5m", min_samples=3, threshold=0, kv_cache=0.9))
    >>> rule.decide({"gpu-1": (10, 10, 12.0, 0.97)}, now=None)["reference=gpu-1"].summary
    'reference gpu-1 saturated for 5m: 10 of 10 scrapes queued or KV cache full (max 12 waiting, KV 97%)'
    >>> rule.decide({"gpu-1": (10, 9, 12.0, 0.97)}, now=None)
    {}
    """

    kind = "reference_saturated"

    def _saturated(self) -> Any:
        kv = self.config.kv_cache if self.config.kv_cache is not None else 2.0  # 2: never
        return case(((_rh.waiting > self.config.threshold) | (_rh.kv_cache_usage >= kv), 1), else_=0)

    def fetch(self, conn: Connection, now: datetime) -> dict[str, tuple[int, int, float, float]]:
        stmt = (select(_rh.reference, func.count(), func.sum(self._saturated()), func.max(_rh.waiting),
                       func.max(_rh.kv_cache_usage))
                .where(_rh.ts > now - self.window, _rh.up.is_(True)).group_by(_rh.reference))
        return {ref: (int(n), int(sat or 0), float(w or 0), float(kv or 0)) for ref, n, sat, w, kv in
                conn.execute(stmt)}

    def decide(self, fetched: Mapping[str, tuple[int, int, float, float]], now: datetime | None) -> dict[str, Evidence]:
        cfg, firing = self.config, {}
        for reference, (n, saturated, waiting, kv) in fetched.items():
            if n < cfg.min_samples or saturated < n:
                continue
            firing[scope_of(reference)] = Evidence(
                summary=(f"reference {reference} saturated for {human_duration(cfg.window.total_seconds())}: "
                         f"{saturated} of {n} scrapes queued or KV cache full (max {waiting:g} waiting, KV {kv:.0%})"),
                value=waiting, threshold=cfg.threshold, window_s=cfg.window.total_seconds(), sample_size=n,
                after={"max_waiting": waiting, "max_kv_cache_usage": kv},
                look=_look(reference, _since(now, cfg.window) if now else "<window start>"),
            )
        return firing


@register
class ReferenceLatency(Rule):
    """A reference got slower: its mean end-to-end request latency over ``window`` (from its own histogram, so
    production and shadow requests alike) is above ``factor`` × the mean over the ``baseline`` window just
    before, and above ``threshold`` milliseconds. Each window needs ``min_samples`` finished requests; with no
    baseline the rule fires on ``threshold`` alone (when set). ``fetch`` gives ``{reference: ((requests,
    latency sum s), (baseline requests, baseline sum s), worst p95 s)}``.

    >>> from monitor.config import AlertRuleConfig
    >>> rule = ReferenceLatency("reference_latency", AlertRuleConfig(
    ...     kind="reference_latency", window="10m", baseline="1h", factor=2, min_samples=20))
    >>> print(rule.decide({"gpu-1": ((100, 300.0), (1000, 1000.0), 5.5)}, now=None)["reference=gpu-1"].summary)
    ... # doctest: +NORMALIZE_WHITESPACE
    reference gpu-1 mean latency 3000 ms over the last 10m (100 requests, p95 up to 5500 ms),
    3.0x the 1000 ms of the 1h before
    """

    kind = "reference_latency"

    def _sums(self, conn: Connection, start: datetime, end: datetime) -> dict[str, tuple[float, float, float]]:
        stmt = (select(_rh.reference, func.sum(_rh.requests), func.sum(_rh.e2e_sum_s), func.max(_rh.e2e_p95_s))
                .where(_rh.ts > start, _rh.ts <= end, _rh.up.is_(True)).group_by(_rh.reference))
        return {ref: (float(n or 0), float(s or 0), float(p or 0)) for ref, n, s, p in conn.execute(stmt)}

    def fetch(self, conn: Connection, now: datetime) -> dict[str, tuple[tuple[float, float], tuple[float, float],
                                                                         float]]:
        current = self._sums(conn, now - self.window, now)
        base = (self._sums(conn, now - self.window - self.config.baseline, now - self.window)
                if self.config.baseline else {})
        return {ref: ((n, s), base.get(ref, (0.0, 0.0, 0.0))[:2], p95) for ref, (n, s, p95) in current.items()}

    def decide(self, fetched: Mapping[str, Any], now: datetime | None) -> dict[str, Evidence]:
        cfg, firing = self.config, {}
        for reference, ((n, total), (base_n, base_total), p95) in fetched.items():
            if n < cfg.min_samples or n <= 0:
                continue
            mean_ms = 1000.0 * total / n
            base_ms = 1000.0 * base_total / base_n if base_n >= cfg.min_samples and base_n > 0 else None
            if mean_ms <= cfg.threshold:
                continue
            if base_ms is None and cfg.threshold <= 0:
                continue
            if base_ms is not None and mean_ms <= cfg.factor * base_ms:
                continue
            summary = (f"reference {reference} mean latency {mean_ms:.0f} ms over the last "
                       f"{human_duration(cfg.window.total_seconds())} ({n:g} requests, p95 up to {1000 * p95:.0f} ms)")
            if base_ms is not None and cfg.baseline is not None:
                summary += (f", {mean_ms / base_ms:.1f}x the {base_ms:.0f} ms of the "
                            f"{human_duration(cfg.baseline.total_seconds())} before")
            else:
                summary += f", above {cfg.threshold:g} ms"
            firing[scope_of(reference)] = Evidence(
                summary=summary, value=mean_ms, threshold=cfg.threshold, window_s=cfg.window.total_seconds(),
                sample_size=int(n), before={"mean_ms": base_ms} if base_ms is not None else None,
                after={"mean_ms": mean_ms, "p95_ms": 1000 * p95},
                look=_look(reference, _since(now, cfg.window) if now else "<window start>"),
            )
        return firing
