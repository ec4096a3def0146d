"""Pipeline health rules: dead letters, consumer lag, and scopes that stopped sending traffic.

They watch the monitor itself rather than the models: when they fire, the other rules may be blind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import Connection, func, select

from monitor.alerts.evidence import Evidence
from monitor.alerts.rules.base import (
    GLOBAL,
    Rule,
    _minute_filter,
    _minute_sums,
    _quote,
    _since,
    _sm,
    register,
)
from monitor.durations import human_duration
from monitor.ingest.steps.aggregate import minute_of
from monitor.storage.db import as_utc as _utc
from monitor.storage.schema import consumer_progress, dead_letters, records


@register
class DeadLetterRate(Rule):
    """Share of messages rejected as dead letters over the window (global). ``fetch`` gives
    ``(dead, accepted)``: dead letters received in the window, and records *stored* in it — both by arrival.
    Counting accepted records by event time (the per-minute counters) made a replay or a backlog of old
    records look like 100% dead letters: its records fall in minutes long past the window."""

    kind = "dead_letter_rate"

    def fetch(self, conn: Connection, now: datetime) -> tuple[int, int]:
        since = now - self.window
        dead = conn.scalar(select(func.count()).where(dead_letters.c.received_at > since)) or 0
        accepted = conn.scalar(select(func.count()).where(records.c.ingested_at > since)) or 0
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
        else:
            summary += f"; catching up (progress {human_duration(max(stalled_s, 0))} ago)"
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
    Both come from `stream_minutes`: the baseline count starts on the minute holding its start.

    Quiet by event time is not enough: while the daemon catches up a backlog (after an outage, a restart),
    every scope looks quiet although its records wait in Kafka. So nothing fires while this daemon's group
    is catching up: lag on a partition (``consumer_progress``: high-water mark above the committed offset)
    with progress recorded within ``window``; `ConsumerLag` watches that, not "nothing arrives". A consumer
    that is behind and *stuck* (no progress for ``window``) does not silence the rule: its alerts fire and
    are inhibited by the lag alert that explains them."""

    kind = "no_traffic"
    lookback: ClassVar[timedelta] = timedelta(days=7)

    def fetch(self, conn: Connection, now: datetime) -> dict[str, tuple[datetime, int]]:
        t = consumer_progress.c
        behind = conn.scalar(select(func.count()).where(
            t.group_id == self.group_id, t.highwater.is_not(None), t.highwater > t.committed,
            t.updated_at >= now - self.window)) or 0
        if behind:
            return {}  # catching up: the records of a quiet-looking scope may be in the backlog
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
