"""Cost of one alert evaluation against traffic volume: rules on per-minute counters vs on raw records.

Generated traffic (`monitor.synthetic.generator.TrafficGenerator`, malformed messages included) spread over the
15 minutes before ``now`` goes through the pipeline's own steps — decode, the real `DetectStep`,
`AggregateStep` — and the real `Store` into a fresh Postgres database, in batches of 2000. After each
size, `evaluate_once` runs with the default rules (volume rules' windows set to 15 minutes so that every
record is in the window), timed two ways in the same run:

- raw (baseline): the rate, latency, dead-letter and no-traffic rules fetch as they did before
  `stream_minutes` existed — aggregating `records` over the window — and the two leak rules join flagged
  `detections` to `records` over the window (kept below as `RawFetch`);
- counters: the rules as shipped, summing `stream_minutes` (the leak rules read `detections` for the
  window's first minute only).

Wall time is the median of ``--rounds`` evaluations. Also printed: whether both fire the same alerts, and
the histogram p95 against Postgres' exact ``percentile_cont``.

    python -m bench.alert_eval                       # 100k then 300k records
    python -m bench.alert_eval --sizes 20000,60000 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, case, create_engine, func, select, text

from detectors.chain import DetectorChain
from monitor.alerts.evaluate import evaluate_once
from monitor.alerts.rules import (
    EXAMPLES,
    DeadLetterRate,
    LatencyP95,
    LeakRule,
    NoTraffic,
    RateRule,
    Rule,
    build_rules,
)
from monitor.alerts.rules.base import _scope_columns, _scope_filter, _scope_label
from monitor.config import Config
from monitor.ingest.batch import RawMessage
from monitor.ingest.pipeline import decode_messages
from monitor.ingest.steps.aggregate import AggregateStep, in_response
from monitor.ingest.steps.detect import DetectStep
from monitor.storage.db import as_utc as _utc
from monitor.storage.db import make_engine
from monitor.storage.schema import dead_letters, detections, metadata, records
from monitor.storage.store import Store, text_policy
from monitor.synthetic.generator import TrafficGenerator

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BATCH = 2000
PARTITIONS = 3
WINDOW = "15m"
VOLUME_RULES = ("toxicity_rate", "refusal_rate", "error_rate", "latency_p95", "dead_letter_rate")
LEAK_RULES = ("pii_in_response", "secret_in_response")


# --- the baseline: the same rules fetching from raw `records` (the code before stream_minutes) -----------

def _grouped(conn: Connection, scope: str, columns: Sequence[Any], *where: Any) -> dict[str, tuple[Any, ...]]:
    keys = _scope_columns(scope)
    stmt = select(*keys, *columns).where(*where)
    if keys:
        stmt = stmt.group_by(*keys)
    return {_scope_label(scope, row): tuple(row[len(keys):]) for row in conn.execute(stmt)}


_COUNTED = {"toxicity_rate": records.c.response_toxicity.is_not(None), "refusal_rate": records.c.refusal.is_not(None),
            "error_rate": records.c.id.is_not(None)}


class RawFetch(Rule):
    """A shipped rule whose ``fetch`` (and examples) read raw `records` as before; ``decide`` is the rule's."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule.name, rule.config, group_id=rule.group_id)
        self.rule = rule
        self.kind = rule.kind  # type: ignore[misc]

    def decide(self, fetched: Any, now: datetime) -> Any:
        return self.rule.decide(fetched, now)

    def fetch(self, conn: Connection, now: datetime) -> Any:
        r, rule, start = records.c, self.rule, now - self.window
        cfg = rule.config
        if isinstance(rule, RateRule):
            cols = [func.count(), func.sum(case((rule.hit(), 1), else_=0))]
            counted = _COUNTED[rule.kind]
            cur = _grouped(conn, cfg.scope, cols, r.ts > start, counted)
            base = (_grouped(conn, cfg.scope, cols, r.ts > start - cfg.baseline, r.ts <= start, counted)
                    if cfg.baseline is not None else {})
            ints = lambda rows: {s: (int(n), int(k or 0)) for s, (n, k) in rows.items()}  # noqa: E731
            return {"current": ints(cur), "baseline": ints(base)}
        if isinstance(rule, LatencyP95):
            p95 = func.percentile_cont(0.95).within_group(r.latency_ms)

            def window(*where: Any) -> dict[str, tuple[int, float]]:
                rows = _grouped(conn, cfg.scope, [func.count(), p95], r.latency_ms.is_not(None), *where)
                return {s: (int(n), float(p)) for s, (n, p) in rows.items()}
            base = window(r.ts > start - cfg.baseline, r.ts <= start) if cfg.baseline is not None else {}
            return {"current": window(r.ts > start), "baseline": base}
        if isinstance(rule, DeadLetterRate):
            dead = conn.scalar(select(func.count()).where(dead_letters.c.received_at > start)) or 0
            return int(dead), int(conn.scalar(select(func.count()).where(r.ts > start)) or 0)
        if isinstance(rule, NoTraffic):
            out = {}
            baseline = cfg.baseline or timedelta(hours=1)
            for scope, (last,) in _grouped(conn, cfg.scope, [func.max(r.ts)], r.ts > now - rule.lookback).items():
                last = _utc(last)
                n = 0
                if now - last >= self.window:
                    scoped = _scope_filter(scope)
                    n = conn.scalar(select(func.count()).where(r.ts > last - baseline, r.ts <= last,
                                                               *([scoped] if scoped is not None else []))) or 0
                out[scope] = (last, int(n))
            return out
        if isinstance(rule, LeakRule):
            keys = _scope_columns(cfg.scope)
            stmt = (select(*keys, detections.c.details)
                    .select_from(detections.join(records, r.id == detections.c.record_id))
                    .where(detections.c.detector == rule.detector, detections.c.flagged.is_(True), r.ts > start)
                    .order_by(r.ts.desc()).limit(10_000))
            counts: dict[str, int] = {}
            for row in conn.execute(stmt):
                if in_response(row[-1]):
                    label = _scope_label(cfg.scope, row)
                    counts[label] = counts.get(label, 0) + 1
            return counts
        return rule.fetch(conn, now)

    def examples(self, conn: Connection, now: datetime, scope: str) -> Sequence[str]:
        if not isinstance(self.rule, RateRule | LatencyP95):
            return self.rule.examples(conn, now, scope)
        scoped = _scope_filter(scope)
        where = [records.c.ts > now - self.window, *([scoped] if scoped is not None else [])]
        if isinstance(self.rule, RateRule):
            stmt = select(records.c.id).where(*where, self.rule.hit()).order_by(records.c.ts.desc())
        else:
            stmt = select(records.c.id).where(*where, records.c.latency_ms.is_not(None)).order_by(
                records.c.latency_ms.desc())
        return list(conn.scalars(stmt.limit(EXAMPLES)))


# --- loading and timing ------------------------------------------------------------------------------

@contextmanager
def fresh_database() -> Iterator[Engine]:
    name = f"wk_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}")
    try:
        metadata.create_all(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def load(engine: Engine, messages: Sequence[RawMessage], steps: Sequence[Any], store: Store) -> float:
    """Messages through decode → steps → store in batches; returns the seconds it took."""
    t0 = time.perf_counter()
    for i in range(0, len(messages), BATCH):
        batch = decode_messages(messages[i:i + BATCH])
        for step in steps:
            step.process(batch)
        store.write(batch)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    return time.perf_counter() - t0


def timed(engine: Engine, config: Config, rules: Sequence[Rule], now: datetime, rounds: int) -> tuple[float, set[str]]:
    times, firing = [], set()
    for _ in range(rounds):
        with engine.begin() as conn:  # each round decides afresh
            conn.execute(text("DELETE FROM alert_outbox; DELETE FROM alerts"))
        t0 = time.perf_counter()
        report = evaluate_once(engine, config, now, rules=rules)
        times.append(time.perf_counter() - t0)
        assert not report.failed_rules, report.failed_rules
        firing = set(report.firing)
    return statistics.median(times), firing


def rule_times(engine: Engine, rules: Sequence[Rule], now: datetime, rounds: int) -> dict[str, float]:
    """Median seconds of each rule's own ``evaluate`` (fetch, decide, examples) on a fresh connection."""
    out = {}
    for rule in rules:
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            with engine.connect() as conn:
                rule.evaluate(conn, now)
            times.append(time.perf_counter() - t0)
        out[rule.name] = statistics.median(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,300000", help="cumulative record counts to measure at")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))

    now = datetime.now(UTC).replace(microsecond=0)
    config = Config.model_validate({"alerts": {"rules": {k: {"window": WINDOW} for k in VOLUME_RULES}}})
    shipped = build_rules(config.alerts)
    raw = [RawFetch(r) if r.kind in (*VOLUME_RULES, *LEAK_RULES, "no_traffic") else r for r in shipped]
    gen = TrafficGenerator(seed=args.seed, start=now - timedelta(minutes=15), rate_per_s=sizes[-1] / 900)
    generated = gen.generate(sizes[-1])
    messages = [RawMessage("llm-logs", i % PARTITIONS, i // PARTITIONS, g.key, g.value)
                for i, g in enumerate(generated)]
    print(f"alert evaluation, default rules ({len(shipped)}), volume rules over {WINDOW}; Postgres; "
          f"median of {args.rounds}")
    with fresh_database() as engine:
        steps = [DetectStep(DetectorChain.from_config(config.detectors, config.pipeline.store_text)),
                 AggregateStep()]
        store = Store(engine, text_policy(config.pipeline.store_text))
        loaded = 0
        for size in sizes:
            seconds = load(engine, messages[loaded:size], steps, store)
            loaded = size
            raw_s, raw_firing = timed(engine, config, raw, now, args.rounds)
            new_s, new_firing = timed(engine, config, shipped, now, args.rounds)
            raw_rules = rule_times(engine, raw, now, args.rounds)
            new_rules = rule_times(engine, shipped, now, args.rounds)
            volume = (*VOLUME_RULES, "no_traffic")
            raw_vol, new_vol = (sum(t for k, t in times.items() if k in volume) for times in (raw_rules, new_rules))
            raw_leak, new_leak = (sum(t for k, t in times.items() if k in LEAK_RULES)
                                  for times in (raw_rules, new_rules))
            others = sorted(((t, k) for k, t in new_rules.items() if k not in (*volume, *LEAK_RULES)), reverse=True)
            with engine.connect() as conn:
                n_records = conn.scalar(select(func.count()).select_from(records))
                n_minutes = conn.scalar(text("SELECT count(*) FROM stream_minutes"))
                exact = conn.scalar(select(func.percentile_cont(0.95).within_group(records.c.latency_ms)))
                latency = next(r for r in shipped if r.kind == "latency_p95")
                by_model = latency.fetch(conn, now)["current"]
                exact_by_model = {f"model={m}": p for m, p in conn.execute(
                    select(records.c.model, func.percentile_cont(0.95).within_group(records.c.latency_ms))
                    .where(records.c.latency_ms.is_not(None)).group_by(records.c.model))}
            worst = max(abs(p / exact_by_model[s] - 1) for s, (_, p) in by_model.items())
            print(f"\n{n_records:,} records ({size:,} messages, loaded in {seconds:.0f} s), "
                  f"{n_minutes} stream_minutes rows; global exact p95 {exact:,.0f} ms")
            print(f"  raw records (baseline): {raw_s * 1000:8.1f} ms per evaluation")
            print(f"  stream_minutes:         {new_s * 1000:8.1f} ms per evaluation   "
                  f"({raw_s / new_s:.0f}× faster)")
            print(f"  of which the 6 volume rules: raw {raw_vol * 1000:.1f} ms, counters {new_vol * 1000:.1f} ms "
                  f"({raw_vol / new_vol:.0f}× faster); slowest other rules: "
                  + ", ".join(f"{k} {t * 1000:.1f} ms" for t, k in others[:3]))
            print(f"  the 2 leak rules: raw {raw_leak * 1000:.1f} ms, counters {new_leak * 1000:.1f} ms "
                  f"({raw_leak / new_leak:.0f}× faster)")
            print(f"  same alerts firing: {raw_firing == new_firing} ({len(new_firing)} firing); "
                  f"histogram p95 per model vs exact: worst {worst:.1%}")
            if raw_firing != new_firing:
                print(f"    only raw: {sorted(raw_firing - new_firing)}; "
                      f"only counters: {sorted(new_firing - raw_firing)}")


if __name__ == "__main__":
    main()
