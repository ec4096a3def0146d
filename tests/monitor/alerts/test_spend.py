"""The spend rule over per-minute spend stored by the real aggregate step, and cost as a drift signal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from monitor.alerts.rules import Spend
from monitor.config import AlertRuleConfig
from monitor.ingest.batch import Batch
from monitor.ingest.record import decode
from monitor.ingest.steps.aggregate import AggregateStep
from monitor.ingest.steps.drift import bucket_rows
from monitor.storage.db import make_engine
from monitor.storage.store import Store, text_policy

NOW = datetime(2026, 11, 3, 12, 0, 30, tzinfo=UTC)


def _record(i: int, model: str, cost: float | None, minutes_ago: float):  # type: ignore[no-untyped-def]
    ts = int((NOW - timedelta(minutes=minutes_ago)).timestamp() * 1000)
    body = {"id": f"{model}-{i}", "ts": ts, "model": model, "app": "chat", "prompt": "p", "response": "r"}
    if cost is not None:
        body["cost_usd"] = cost
    return decode(orjson.dumps(body))


def test_spend_fires_per_model_above_its_budget_and_names_the_costliest_calls(migrated_db_url):
    """gpt-big spends $0.50 × 30 = $15 in the last hour against a $10 budget; gpt-small spends $0.30 and
    unpriced records of a third model cost nothing. The alert says how much, on how many calls, per call, and
    where to look; its examples are the costliest calls."""
    batch = Batch(records=[_record(i, "gpt-big", 0.5 + (i == 7), 5 + i) for i in range(30)]
                  + [_record(i, "gpt-small", 0.01, 5 + i) for i in range(30)]
                  + [_record(i, "local", None, 5) for i in range(10)]
                  + [_record(99, "gpt-big", 40.0, 180)])  # long before the window
    batch.next_offsets = {("", 0): len(batch.records)}
    AggregateStep().process(batch)
    engine = make_engine(migrated_db_url)
    Store(engine, text_policy("none")).write(batch)
    rule = Spend("spend", AlertRuleConfig(kind="spend", scope="model", threshold=10.0, window="1h", min_samples=5))
    with engine.connect() as conn:
        firing = rule.evaluate(conn, NOW)
    engine.dispose()
    assert set(firing) == {"model=gpt-big"}
    evidence = firing["model=gpt-big"]
    assert evidence.summary == ("spend $16.00 over the last 1h on 30 priced calls ($0.5333 per call), "
                                "above the $10.00 budget")
    assert evidence.examples[0] == "gpt-big-7" and "sum(cost_usd)" in evidence.look
    assert "model = 'gpt-big'" in evidence.look


def test_a_spend_spike_against_the_baseline_is_scaled_to_the_window():
    rule = Spend("spend", AlertRuleConfig(kind="spend", scope="app", threshold=1.0, window="1h", baseline="4h",
                                          factor=2.0))
    quiet = {"current": {"app=a": (100, 5.0)}, "baseline": {"app=a": (400, 16.0)}}  # $4/h before, $5 now
    loud = {"current": {"app=a": (100, 9.0)}, "baseline": {"app=a": (400, 16.0)}}
    assert rule.decide(quiet, now=None) == {}
    assert "$4.0000" not in rule.decide(loud, now=None)["app=a"].summary
    assert "; $4.00 for as long before it (2× allowed)" in rule.decide(loud, now=None)["app=a"].summary


def test_cost_is_a_drift_signal_of_its_streams():
    records = [_record(i, "m", 0.002, 1) for i in range(3)] + [_record(9, "m", None, 1)]
    rows = [r for r in bucket_rows(records, [None] * 4, 2.0, NOW) if r["signal"] == "cost"]
    assert sorted(r["stream"] for r in rows) == ["*", "app=chat", "model=m", "model=m,app=chat"]
    assert all(r["n"] == 3 and abs(r["total"] - 0.006) < 1e-12 for r in rows)
