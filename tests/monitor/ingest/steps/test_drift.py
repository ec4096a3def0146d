"""The drift step in the pipeline: generated incidents become `drift_events`, state survives restarts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from monitor.config import DriftConfig
from monitor.ingest.batch import Batch
from monitor.ingest.record import Record, decode
from monitor.ingest.steps.drift import DriftStep, state_key
from monitor.storage.db import make_engine
from monitor.storage.schema import detector_state, drift_events, metadata
from monitor.storage.schema import records as records_table
from monitor.storage.store import Store, text_policy
from monitor.synthetic.generator import Incident, TrafficGenerator
from tests.helpers import DaemonThread, config_for, count, produce, wait_for, write_config

SMALL = DriftConfig(arl0=100_000, warmup=1000, topic_sample_rate=0.0, checkpoint_every_s=60)
SLOWDOWN = Incident("latency_shift", start=6000, duration=100_000, magnitude=0.5)  # 50% slower


def _generated(n: int, incidents: list[Incident], partition: int = 0) -> list[Record]:
    gen = TrafficGenerator(seed=21, start=datetime(2026, 4, 1, tzinfo=UTC), incidents=incidents)
    out = []
    for offset, item in enumerate(gen.generate(n)):
        record = decode(item.value)
        record.topic, record.partition, record.offset = "llm-logs", partition, offset
        out.append(record)
    return out


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _feed(step: DriftStep, records: list[Record], size: int = 500) -> list[Batch]:
    batches = []
    for i in range(0, len(records), size):
        batch = Batch(records=records[i:i + size])
        step.process(batch)
        batches.append(batch)
    return batches


def test_a_latency_regression_in_generated_traffic_becomes_a_drift_event_after_it_starts():
    step = DriftStep.from_config(SMALL)
    records = _generated(9000, [SLOWDOWN])
    rows = [row for b in _feed(step, records) for row in b.rows.get(drift_events, [])]
    latency = [r for r in rows if r["signal"] == "latency_ms" and r["stream"] == "*"]
    assert latency, f"no latency drift on the global stream; got {[(r['stream'], r['signal']) for r in rows]}"
    first = latency[0]
    index = next(i for i, r in enumerate(records) if r.id == first["record_id"])
    assert 6000 <= index < 7000
    assert first["detector"] == "cusum" and first["details"]["direction"] == "up"
    assert first["after"]["mean"] > 1.3 * first["before"]["mean"]
    assert first["detected_at"] == records[index].ts
    # Nothing but the slowdown (and what follows from it, e.g. other streams' latency) was reported.
    assert {r["signal"] for r in rows} == {"latency_ms"}



def test_new_subjects_in_prompts_are_caught_from_embedded_samples_of_two_partitions_in_one_batch():
    config = DriftConfig(arl0=100_000, warmup=1000, topics=4, topic_warmup=800, topic_sample_rate=0.5)
    step = DriftStep.from_config(config)
    records = _generated(9000, [Incident("topic_shift", start=5000, duration=100_000, magnitude=0.4)])
    for i, record in enumerate(records):  # the producer spread the records over two partitions
        record.partition, record.offset = i % 2, i // 2
    rows = [row for b in _feed(step, records, size=1000) for row in b.rows.get(drift_events, [])]
    topic = [r for r in rows if r["signal"] == "prompt_topic" and r["stream"] == "*"]
    assert {r["details"]["partition"] for r in topic} == {0, 1}, rows
    for row in topic:
        index = next(i for i, r in enumerate(records) if r.id == row["record_id"])
        assert 5000 <= index < 7000 and row["detector"] == "topic"
    assert set(step.held) == {("llm-logs", 0), ("llm-logs", 1)}
    assert step.held[("llm-logs", 1)].next_offset == 4500

def test_state_is_checkpointed_with_a_batch_once_per_interval():
    clock = Clock()
    step = DriftStep(lambda: DriftStep.from_config(SMALL).make_bank(), checkpoint_every_s=30, clock=clock)
    records = _generated(1500, [])
    first = _feed(step, records[:500])[0]
    assert detector_state not in first.upserts
    clock.now = 31
    second = _feed(step, records[500:1000])[0]
    assert [r["key"] for r in second.upserts[detector_state]] == [state_key("llm-logs", 0)]
    assert detector_state not in _feed(step, records[1000:])[0].upserts


def test_a_restart_mid_incident_still_detects_it_and_does_not_count_a_replayed_batch_twice(tmp_path):
    url = f"sqlite:///{tmp_path / 'wk.db'}"
    engine = make_engine(url)
    metadata.create_all(engine)
    store = Store(engine, text_policy("none"))
    records = _generated(9000, [SLOWDOWN])
    clock = Clock()
    before = DriftStep.from_config(SMALL, engine)
    before.clock = clock
    # Run until just after the slowdown began, checkpointing with the last batch, as the pipeline would.
    for batch in _feed(before, records[:6000]):
        store.write(batch)
    clock.now = 1e9
    last = Batch(records=records[6000:6040])
    before.process(last)
    assert not last.rows.get(drift_events) and last.upserts[detector_state]
    store.write(last)
    # ... and crash: no close(), no revocation. A new daemon is assigned the partition.
    after = DriftStep.from_config(SMALL, engine)
    after.on_assigned({("llm-logs", 0)})
    assert after.held[("llm-logs", 0)].next_offset == 6040
    assert not after.held[("llm-logs", 0)].bank.detectors["*"]["latency_ms"].warming_up
    replayed = Batch(records=records[6000:6040])  # redelivered: already in the state, ignored
    after.process(replayed)
    assert not replayed.rows.get(drift_events)
    events = [r for b in _feed(after, records[6040:]) for r in b.rows.get(drift_events, [])]
    detected = [r for r in events if (r["stream"], r["signal"]) == ("*", "latency_ms")]
    assert detected
    index = next(i for i, r in enumerate(records) if r.id == detected[0]["record_id"])
    assert index < 7000  # not a fresh warm-up (1000 records) plus a detection
    after.on_revoked({("llm-logs", 0)})
    assert not after.held
    with engine.connect() as conn:
        assert conn.execute(select(detector_state.c.key)).scalars().all() == [state_key("llm-logs", 0)]
    engine.dispose()


@pytest.mark.slow
def test_a_slowdown_sent_through_kafka_is_stored_as_a_drift_event(migrated_db_url, kafka_broker, topic, tmp_path):
    gen = TrafficGenerator(seed=22, start=datetime(2026, 4, 2, tzinfo=UTC),
                           incidents=[Incident("latency_shift", start=7500, duration=10_000, magnitude=0.6)])
    items = list(gen.generate(15_000))
    produce(kafka_broker, topic, [item.value for item in items])
    config = config_for(write_config(tmp_path / "monitor.toml", db_url=migrated_db_url, bootstrap=kafka_broker,
                                     topic=topic, extra="\n[drift]\nwarmup = 1000\ntopic_sample_rate = 0.0\n"))
    engine = make_engine(migrated_db_url)

    def latency_events() -> list:
        with engine.connect() as conn:
            return conn.execute(select(drift_events).where(drift_events.c.signal == "latency_ms")).all()

    with DaemonThread(config, steps=[DriftStep.from_config(config.drift, engine)]) as daemon:
        wait_for(lambda: bool(latency_events()), 120, "a latency drift event")
        wait_for(lambda: count(migrated_db_url, records_table) == len(items), 120, "every record")
        assert daemon.stop() == 0
    index = {item.truth.id: item.truth.index for item in items}
    events = latency_events()
    assert all(index[e.record_id] >= 7500 for e in events)
    assert any(e.stream == "*" for e in events)
    with engine.connect() as conn:  # shutdown stored every partition's state
        keys = set(conn.execute(select(detector_state.c.key)).scalars())
    assert {state_key(topic, p) for p in range(3)} <= keys
    engine.dispose()
