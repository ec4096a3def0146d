"""Per-minute stream counters: every stored record counted once, even when Kafka delivers it again."""

from __future__ import annotations

import math
import random
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest
from sqlalchemy import Engine, case, func, select

from detectors.chain import DetectorChain
from detectors.config import DetectorsConfig
from monitor.alerts.rules import ErrorRate, LatencyP95, PiiInResponse, RefusalRate, SecretInResponse, ToxicityRate
from monitor.config import AlertRuleConfig
from monitor.ingest.batch import Batch, RawMessage
from monitor.ingest.pipeline import Pipeline
from monitor.ingest.steps.aggregate import AggregateStep, quantile
from monitor.ingest.steps.detect import DetectStep
from monitor.storage.schema import STREAM_LATENCY_BOUNDS_MS, STREAM_LATENCY_COLUMNS, records, stream_minutes
from monitor.storage.store import Store, text_policy

T0 = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
TOPIC = "llm-logs"


class PartitionLog:
    """An in-memory partitioned log read the way the pipeline reads Kafka: from a start position, in
    order, up to ``max_records`` per poll. ``commit`` records positions the way a consumer group does;
    a new reader of the same log starts wherever it is told (the last commit, or earlier: a redelivery)."""

    def __init__(self, messages: list[RawMessage], start: dict[tuple[str, int], int] | None = None) -> None:
        self.messages = messages
        self.position = dict(start or {})
        self.committed: dict[tuple[str, int], int] = {}
        self._durable: dict[tuple[str, int], int] = {}

    def poll(self, max_records: int, timeout_ms: int) -> list[RawMessage]:
        out = [m for m in self.messages if m.offset >= self.position.get((m.topic, m.partition), 0)][:max_records]
        for m in out:
            self.position[(m.topic, m.partition)] = m.offset + 1
        return out

    def mark_durable(self, next_offsets: dict[tuple[str, int], int]) -> None:
        self._durable.update(next_offsets)

    def commit(self, only: set[tuple[str, int]] | None = None) -> bool:
        self.committed.update(self._durable)
        return True

    def positions(self, skip: object = ()) -> dict[tuple[str, int], int]:
        return {}  # every partition of this log is read from its first message on

    def highwater(self, topic: str, partition: int) -> int | None:
        return 1 + max((m.offset for m in self.messages if (m.topic, m.partition) == (topic, partition)), default=-1)

    def pause(self) -> None:
        return None

    def resume(self) -> None:
        return None


def traffic(n: int, *, start: int = 0, seed: int = 0) -> list[RawMessage]:
    """``n`` records of one partition over a few minutes: some errors, some refusals, varied latency."""
    rng = random.Random(seed)
    out = []
    for i in range(start, start + n):
        refused = i % 7 == 0
        record = {"id": f"req-{i}", "ts": (T0 + timedelta(seconds=2 * i)).isoformat(), "model": "m1",
                  "app": "chat" if i % 2 else None, "prompt": f"question {i}",
                  "response": "I cannot help with that, sorry." if refused else f"Here is answer {i}.",
                  "status": "error" if i % 10 == 0 else "ok", "latency_ms": rng.lognormvariate(6, 0.5)}
        out.append(RawMessage(TOPIC, 0, i, None, orjson.dumps(record)))
    return out


@pytest.fixture(scope="module")
def chain() -> DetectorChain:
    return DetectorChain.from_config(DetectorsConfig())


def run_pipeline(engine: Engine, log: PartitionLog, chain: DetectorChain) -> Pipeline:
    """A daemon's pipeline (detect → aggregate → store) over ``log`` until it is drained."""
    steps = [DetectStep(chain), AggregateStep()]
    pipeline = Pipeline(log, steps, Store(engine, text_policy("none")), group_id="watchkeeper", batch_size=50)
    while pipeline.run_once(threading.Event()):
        pass
    return pipeline


def counters(engine: Engine) -> dict[str, int]:
    sm = stream_minutes.c
    names = ["n", "errors", "refusal_scored", "refusals", "toxicity_scored", "latency_n", *STREAM_LATENCY_COLUMNS]
    with engine.connect() as conn:
        row = conn.execute(select(*(func.sum(sm[c]) for c in names))).one()
    return dict(zip(names, (int(v or 0) for v in row), strict=True))


def from_records(engine: Engine) -> dict[str, int]:
    r = records.c
    with engine.connect() as conn:
        n, errors, refusals = conn.execute(select(
            func.count(), func.sum(case((r.status == "error", 1), else_=0)),
            func.sum(case((r.refusal.is_(True), 1), else_=0)))).one()
    return {"n": n, "errors": int(errors), "refusals": int(refusals)}


def test_counters_match_the_stored_records_and_a_restart_that_replays_counts_nothing_twice(engine, chain) -> None:  # type: ignore[no-untyped-def]
    messages = traffic(300)
    first = PartitionLog(messages)
    run_pipeline(engine, first, chain)
    stored = counters(engine)
    assert {k: stored[k] for k in ("n", "errors", "refusals")} == from_records(engine)
    assert stored["n"] == stored["toxicity_scored"] == stored["refusal_scored"] == stored["latency_n"] == 300
    assert sum(stored[c] for c in STREAM_LATENCY_COLUMNS) == 300

    # The daemon dies after storing its batches but before Kafka saw the last commits: a new process
    # (new steps, positions read from the database) gets everything from offset 120 on again.
    run_pipeline(engine, PartitionLog(messages, start={(TOPIC, 0): 120}), chain)
    assert counters(engine) == stored

    # Then new traffic arrives, along with the tail of the old one redelivered: only the new is counted.
    more = traffic(100, start=300, seed=1)
    run_pipeline(engine, PartitionLog(messages + more, start={(TOPIC, 0): 250}), chain)
    after = counters(engine)
    assert after["n"] == 400 and {k: after[k] for k in ("n", "errors", "refusals")} == from_records(engine)


def test_a_batch_seen_again_by_the_same_process_is_not_counted_again(engine, chain) -> None:  # type: ignore[no-untyped-def]
    messages = traffic(60)
    log = PartitionLog(messages)
    pipeline = run_pipeline(engine, log, chain)
    stored = counters(engine)
    log.position = {(TOPIC, 0): 0}  # the broker rewinds the partition (a rebalance back to us)
    while pipeline.run_once(threading.Event()):
        pass
    assert counters(engine) == stored and stored["n"] == 60


def test_rules_read_the_counters_the_pipeline_keeps(engine, chain) -> None:  # type: ignore[no-untyped-def]
    run_pipeline(engine, PartitionLog(traffic(300)), chain)  # 10 minutes of traffic from T0
    now = T0 + timedelta(minutes=10)
    cfg = AlertRuleConfig
    with engine.connect() as conn:
        errors = ErrorRate("e", cfg(kind="error_rate", window="10m")).fetch(conn, now)
        refusals = RefusalRate("r", cfg(kind="refusal_rate", window="10m", scope="app")).fetch(conn, now)
        latency = LatencyP95("l", cfg(kind="latency_p95", window="10m")).fetch(conn, now)
        exact_p95 = float(np.percentile(conn.scalars(select(records.c.latency_ms)).all(), 95))
    assert errors["current"] == {"global": (300, 30)}
    assert set(refusals["current"]) == {"app=chat", "app=-"}  # records without an app
    assert sum(n for n, _ in refusals["current"].values()) == 300
    n, p95 = latency["current"]["global"]
    assert n == 300 and abs(math.log(p95 / exact_p95)) < math.log(10 ** 0.1)  # within one bucket


def test_the_store_adds_counters_and_merges_rows_of_the_same_minute(engine) -> None:  # type: ignore[no-untyped-def]
    store = Store(engine, text_policy("none"))

    def row(n: int, low: float, high: float, at: datetime) -> dict:
        return {"minute": T0, "model": "m1", "app": "", "n": n, "errors": 0, "toxicity_scored": 0, "toxic": 0,
                "refusal_scored": 0, "refusals": 0, "latency_n": n, "latency_sum": n * low, "latency_min": low,
                "latency_max": high, **dict.fromkeys(STREAM_LATENCY_COLUMNS, 0), "last_ts": at, "updated_at": at}

    store.write(Batch(increments={stream_minutes: [row(2, 50.0, 60.0, T0), row(3, 40.0, 55.0, T0)]}))
    store.write(Batch(increments={stream_minutes: [row(1, 45.0, 90.0, T0 + timedelta(seconds=5))]}))
    with engine.connect() as conn:
        (stored,) = conn.execute(select(stream_minutes)).all()
    assert (stored.n, stored.latency_n, stored.latency_sum) == (6, 6, 2 * 50.0 + 3 * 40.0 + 45.0)
    assert (stored.latency_min, stored.latency_max) == (40.0, 90.0)
    assert stored.updated_at.replace(tzinfo=UTC) == T0 + timedelta(seconds=5)


def test_p95_from_the_histogram_is_within_ten_percent_on_lognormal_latencies() -> None:
    # From very tight (σ = 0.05: everything within ±10 %) to very spread (σ = 1.5) around ~700 ms.
    rng = np.random.default_rng(7)
    for sigma in (0.05, 0.2, 0.6, 1.5):
        latencies = rng.lognormal(6.5, sigma, 20_000)
        counts = np.bincount(np.searchsorted(STREAM_LATENCY_BOUNDS_MS, latencies, side="right"),
                             minlength=len(STREAM_LATENCY_COLUMNS))
        estimate = quantile(counts.tolist(), 0.95, float(latencies.min()), float(latencies.max()))
        exact = float(np.percentile(latencies, 95))
        assert estimate is not None and abs(estimate / exact - 1) < 0.10, (sigma, estimate, exact)
    assert quantile([0] * len(STREAM_LATENCY_COLUMNS), 0.95) is None


def test_a_toxicity_rule_for_another_score_than_the_counters_count_is_refused() -> None:
    with pytest.raises(ValueError, match=r"score must be 0\.3"):
        ToxicityRate("toxicity_rate", AlertRuleConfig(kind="toxicity_rate", score=0.8))


def test_leak_rules_count_responses_that_leak_from_the_counters_and_the_edge_of_the_window(engine, chain) -> None:  # type: ignore[no-untyped-def]
    """Every 5th answer hands out an AWS key and every 3rd prompt pastes an e-mail address: the secret rule
    counts the leaking answers (not the pasted prompts), exactly, also for a window that starts mid-minute."""
    messages = []
    for i in range(300):  # 10 minutes, one record every 2 s
        record = {"id": f"leak-{i}", "ts": (T0 + timedelta(seconds=2 * i)).isoformat(), "model": "m1",
                  "prompt": f"mail me at user{i}@example.com" if i % 3 == 0 else f"question {i}",
                  "response": "Use AKIA4HKQ2ZP7LW3NXR6T for that." if i % 5 == 0 else f"Answer {i}."}
        messages.append(RawMessage(TOPIC, 0, i, None, orjson.dumps(record)))
    run_pipeline(engine, PartitionLog(messages), chain)
    now = T0 + timedelta(minutes=10)
    with engine.connect() as conn:
        sums = conn.execute(select(func.sum(stream_minutes.c.secret_in_response),
                                   func.sum(stream_minutes.c.pii_in_response))).one()
        whole = SecretInResponse("s", AlertRuleConfig(kind="secret_in_response", window="15m")).fetch(conn, now)
        edge = SecretInResponse("s", AlertRuleConfig(kind="secret_in_response", window="150s")).fetch(conn, now)
        pii = PiiInResponse("p", AlertRuleConfig(kind="pii_in_response", window="15m")).fetch(conn, now)
    assert tuple(sums) == (60, 0)  # e-mails were only ever in prompts
    assert whole == {"global": {"-": 60}} and pii == {}  # per scope, per app ("-": records without one)
    # 150 s before T0 + 600 s is T0 + 450 s, mid-minute: records 226..299 are inside, 15 of them leak.
    assert edge == {"global": {"-": sum(1 for i in range(226, 300) if i % 5 == 0)}}
