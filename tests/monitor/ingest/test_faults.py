"""Never stop, never lose: poison messages, a step that raises, a restarted broker — through Kafka and the
real daemon, on SQLite and Postgres. Every message ends stored or dead-lettered, the daemon keeps running,
and the per-minute counters agree with what `records` holds."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
from sqlalchemy import func, select

from monitor.ingest.batch import Batch
from monitor.ingest.source import COORDINATOR_GRACE_S
from monitor.ingest.steps import Step
from monitor.storage.db import make_engine
from monitor.storage.schema import dead_letters, drift_buckets, records, stream_minutes
from monitor.synthetic.broker import LocalBroker, create_topic, delete_topic, free_port
from monitor.synthetic.poison import base, corpus
from tests.helpers import DaemonThread, config_for, count, encode, good_record, produce, wait_for, write_config


def _letters(db_url: str) -> list:  # type: ignore[type-arg]
    engine = make_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(select(dead_letters.c.offset, dead_letters.c.raw, dead_letters.c.reason)).all()
    engine.dispose()
    return rows


def _counted(db_url: str) -> int:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        n = conn.execute(select(func.coalesce(func.sum(stream_minutes.c.n), 0))).scalar_one()
    engine.dispose()
    return int(n)


def test_poison_messages_are_dead_lettered_and_every_other_message_stored(
    migrated_db_url, kafka_broker, topic, tmp_path
):
    """Each input that once crash-looped the daemon (a timestamp at the calendar's edge, metadata 1,000 or
    300 levels deep in a batch of hundreds, two latencies of 1e308 in one minute) and the classic fuzz cases
    arrive between valid traffic: the daemon stores the valid, dead-letters the poison with a reason naming
    the field, keeps running, and counts exactly what it stored."""
    poisons = corpus(prefix=uuid.uuid4().hex[:6])
    good = [encode(good_record(i)) for i in range(400)]
    values = good[:200] + [p.value for p in poisons] + good[200:]
    produce(kafka_broker, topic, values)
    config = config_for(write_config(tmp_path / "monitor.toml", db_url=migrated_db_url, bootstrap=kafka_broker,
                                     topic=topic))
    expected_letters = [p for p in poisons if p.reason is not None]
    stored_poison = len(poisons) - len(expected_letters)

    with DaemonThread(config) as daemon:
        wait_for(lambda: count(migrated_db_url, records) + count(migrated_db_url, dead_letters) >= len(values),
                 90, "every message to be stored or dead-lettered")
        assert daemon.stop() == 0

    assert count(migrated_db_url, records) == len(good) + stored_poison
    letters = {bytes(r.raw) if r.raw is not None else None: r.reason for r in _letters(migrated_db_url)}
    assert len(letters) == len(expected_letters)
    for poison in expected_letters:
        assert poison.reason in letters[poison.value], (poison.name, letters[poison.value])
    assert _counted(migrated_db_url) == len(good) + stored_poison


class _Explodes(Step):
    """A step with a bug that one kind of record triggers (as the detectors' walk once did on deep metadata)."""

    def process(self, batch: Batch) -> None:
        for record in batch.records:
            if record.prompt == "explode":
                raise RecursionError("maximum recursion depth exceeded")


def test_a_step_raising_on_one_record_dead_letters_that_record_and_stores_the_rest(
    migrated_db_url, kafka_broker, topic, tmp_path, caplog
):
    """Through Kafka and the daemon: the culprits are found by bisection (a few runs of the step, not one per
    record), dead-lettered with the reason, and every other record is stored and counted once."""
    from monitor.ingest.steps.aggregate import AggregateStep

    db_url = migrated_db_url
    config = config_for(write_config(tmp_path / "monitor.toml", db_url=db_url, bootstrap=kafka_broker,
                                     topic=topic))
    bombs = [encode(good_record(10_000 + i, prompt="explode", response="boom")) for i in range(2)]
    produce(kafka_broker, topic, [encode(good_record(i)) for i in range(300)] + bombs)
    steps = [_Explodes(), AggregateStep()]
    with caplog.at_level(logging.WARNING), DaemonThread(config, steps=steps) as daemon:
        wait_for(lambda: count(db_url, records) == 300 and count(db_url, dead_letters) == 2, 60,
                 "the good records and the culprits' dead letters")
        assert daemon.stop() == 0
    letters = _letters(db_url)
    assert sorted(bytes(r.raw) for r in letters) == sorted(bombs)
    assert {r.reason for r in letters} == {"_Explodes failed on this message: RecursionError"}
    assert _counted(db_url) == 300
    assert "step _Explodes raised RecursionError on a batch" in caplog.text


class _CountingExplodes(_Explodes):
    def __init__(self) -> None:
        self.runs = 0

    def process(self, batch: Batch) -> None:
        self.runs += bool(batch.records)
        super().process(batch)


@pytest.mark.parametrize(("culprits", "most_runs"), [((300,), 19), ((7, 400), 36), ((), 1)])
def test_culprits_are_found_by_bisection_in_few_runs_and_the_rest_goes_through(sqlite_url, culprits, most_runs):
    """512 records in one batch: one culprit costs 2·log2(512) + 1 = 19 runs of the step (not 512), two cost
    at most twice that; each culprit is a dead letter with the reason, every other record is stored in
    order and counted once."""
    import threading

    from monitor.ingest.batch import RawMessage
    from monitor.ingest.pipeline import Pipeline
    from monitor.ingest.steps.aggregate import AggregateStep
    from monitor.storage.db import upgrade
    from monitor.storage.store import Store, text_policy
    from tests.monitor.ingest.steps.test_aggregate import PartitionLog

    upgrade(sqlite_url)
    values = [encode(good_record(i, prompt="explode" if i in culprits else f"q{i}")) for i in range(512)]
    log = PartitionLog([RawMessage("llm-logs", 0, i, None, v) for i, v in enumerate(values)])
    step = _CountingExplodes()
    engine = make_engine(sqlite_url)
    try:
        pipeline = Pipeline(log, [step, AggregateStep()], Store(engine, text_policy("none")), group_id="g",
                            batch_size=512)
        assert pipeline.run_once(threading.Event()) == 512
    finally:
        engine.dispose()
    assert step.runs <= most_runs
    assert sorted(r.offset for r in _letters(sqlite_url)) == sorted(culprits)
    assert count(sqlite_url, records) == _counted(sqlite_url) == 512 - len(culprits)
    assert log.committed == {("llm-logs", 0): 512}


def _reuse_ids(db_url: str, kafka_broker: str, topic: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = [encode(good_record(i)) for i in range(50)]
    again = [encode(good_record(i, response="a different answer", latency_ms=9999)) for i in range(10)]
    produce(kafka_broker, topic, first)
    config = config_for(write_config(tmp_path / "monitor.toml", db_url=db_url, bootstrap=kafka_broker, topic=topic))
    with DaemonThread(config) as daemon:
        wait_for(lambda: count(db_url, records) == 50, 60, "the first messages")
        produce(kafka_broker, topic, again + first[:5])  # a producer bug, then a plain redelivery
        wait_for(lambda: daemon.daemon.pipeline.counters.messages >= 65, 60, "the reused ids to be consumed")
        assert daemon.stop() == 0


def _drift_counted(db_url: str) -> int:
    """Records added to the drift buckets of the global stream (every record has a prompt length)."""
    engine = make_engine(db_url)
    with engine.connect() as conn:
        n = conn.execute(select(func.coalesce(func.sum(drift_buckets.c.n), 0)).where(
            drift_buckets.c.stream == "*", drift_buckets.c.signal == "prompt_chars")).scalar_one()
    engine.dispose()
    return int(n)


def test_a_second_message_reusing_an_id_is_stored_once_and_counted_once(migrated_db_url, kafka_broker, topic,
                                                                         tmp_path):
    """A producer bug sends a different message under an id already used, at a new offset: the first is kept
    (the id is the idempotency key); the second is neither stored nor dead-lettered, and neither the
    per-minute counters nor the drift buckets count it (they count what the store really inserted)."""
    _reuse_ids(migrated_db_url, kafka_broker, topic, tmp_path)
    assert count(migrated_db_url, records) == 50
    assert count(migrated_db_url, dead_letters) == 0
    assert _counted(migrated_db_url) == 50
    assert _drift_counted(migrated_db_url) == 50


def _own_broker(tmp_path, db_url: str, name: str, partitions: int):  # type: ignore[no-untyped-def]
    """A broker of the test's own (to restart), a topic on it, and the daemon's config: (port, topic, broker,
    config)."""
    port = free_port()
    topic = f"{name}-{uuid.uuid4().hex[:6]}"
    broker = LocalBroker(port=port).start()
    create_topic(broker.bootstrap_servers, topic, partitions=partitions)
    config = config_for(write_config(tmp_path / "monitor.toml", db_url=db_url, bootstrap=broker.bootstrap_servers,
                                     topic=topic))
    return port, topic, broker, config


@pytest.mark.slow
def test_a_broker_restarted_empty_reuses_offsets_and_nothing_is_lost_or_skipped(migrated_db_url, tmp_path, caplog):
    """tansu keeps everything in memory: restarted, it has the topic again from offset 0 (here recreated by
    hand, then auto-created). The daemon waits the outage out, stores every new record although its offset
    was used before, keeps a new dead letter at a reused offset, counts every stored record, says once that
    offsets went backwards (with the partition and the jump), and never exits."""
    port, topic, broker, config = _own_broker(tmp_path, migrated_db_url, "restart", partitions=1)
    try:
        produce(broker.bootstrap_servers, topic, [encode(good_record(i)) for i in range(300)] + [b"{broken one"])
        with caplog.at_level(logging.INFO), DaemonThread(config) as daemon:
            wait_for(lambda: count(migrated_db_url, records) == 300 and count(migrated_db_url, dead_letters) == 1,
                     60, "the traffic before the restart")
            broker.stop()
            time.sleep(COORDINATOR_GRACE_S + 3)  # down long enough to be an outage, not a coordinator moving
            broker = LocalBroker(port=port).start()
            create_topic(broker.bootstrap_servers, topic, partitions=1)
            after = [encode(base(f"after-{i}", ts=1_763_000_100_000 + i)) for i in range(200)]
            # to partition 0: the daemon's own metadata requests may auto-create the topic with the broker's
            # default partition count before create_topic runs, and the offsets below are partition 0's
            _produce_to(broker.bootstrap_servers, topic, {0: [*after, b"{broken two"]})
            wait_for(lambda: count(migrated_db_url, records) == 500 and count(migrated_db_url, dead_letters) == 2,
                     90, "the traffic after the restart, at offsets used before")
            assert daemon.daemon.stop_event.is_set() is False and daemon.exit_code is None
            assert daemon.stop() == 0
    finally:
        broker.stop()
    assert {r.offset for r in _letters(migrated_db_url)} == {300, 200}
    assert _counted(migrated_db_url) == 500
    # Said once, by whoever saw it first: the source (its position past the new log end: moved back to the
    # start) or the pipeline (the group forgot its offsets: the batch starts below what was stored).
    warnings = [r.getMessage() for r in caplog.records
                if "offsets went backwards" in r.getMessage() or "past the log end" in r.getMessage()]
    assert len(warnings) == 1 and f"{topic}[0]" in warnings[0]
    # The outage itself in two lines of ours (kafka-python's poll does not raise while the broker is down).
    ours = [r for r in caplog.records if r.name == "monitor.ingest.source"]
    down = [r for r in ours if r.getMessage().startswith("Kafka unavailable")]
    back = [r for r in ours if r.getMessage().startswith("broker answering again")]
    assert len(down) == 1 and down[0].levelname == "WARNING", [r.getMessage() for r in ours]
    assert len(back) == 1, [r.getMessage() for r in ours]


def _produce_to(bootstrap: str, topic: str, by_partition: dict[int, list[bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    futures = [producer.send(topic, value=v, partition=p) for p, values in by_partition.items() for v in values]
    producer.flush()
    for future in futures:
        future.get(timeout=10)
    producer.close()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["broker_restarted", "topic_recreated"])
def test_a_topic_back_with_more_partitions_and_fewer_messages_is_read_whole_within_seconds(
    migrated_db_url, tmp_path, caplog, how
):
    """The topic comes back with 4 partitions instead of 3, holding fewer messages than were read: after a
    broker restart (memory-only storage, the group forgotten) or deleted and created again under a running
    broker (the group and its positions kept). The partitions read further than their new log end are
    re-read from the log start with one WARNING each, and the new partition is assigned once the consumer
    refreshes its metadata (``[kafka] metadata_max_age_ms``, 10 s; kafka-python's default of 5 minutes left
    it unread that long) — everything stored and counted within 90 s, the daemon never exits."""
    port, topic, broker, config = _own_broker(tmp_path, migrated_db_url, "grow", partitions=3)
    try:
        assert config.kafka.metadata_max_age_ms == 10_000
        _produce_to(broker.bootstrap_servers, topic,
                    {p: [encode(good_record(p * 100 + i)) for i in range(100)] for p in range(3)})
        with caplog.at_level(logging.INFO), DaemonThread(config) as daemon:
            wait_for(lambda: count(migrated_db_url, records) == 300, 60, "the traffic before")
            if how == "broker_restarted":
                broker.stop()
                broker = LocalBroker(port=port).start()
            else:
                delete_topic(broker.bootstrap_servers, topic)
            create_topic(broker.bootstrap_servers, topic, partitions=4)
            after = {p: [encode(base(f"after-{p}-{i}", ts=1_763_000_100_000 + i)) for i in range(50)]
                     for p in range(4)}
            _produce_to(broker.bootstrap_servers, topic, after)
            wait_for(lambda: count(migrated_db_url, records) == 500, 90, "the traffic after, on 4 partitions")
            assert daemon.exit_code is None
            assert daemon.stop() == 0
    finally:
        broker.stop()
    assert _counted(migrated_db_url) == 500
    rewinds = [r.getMessage() for r in caplog.records if "past the log end" in r.getMessage()]
    assert len(rewinds) <= 3 and all(r.levelname == "WARNING" for r in caplog.records
                                     if "past the log end" in r.getMessage())


class _Stalls(Step):
    """Holds one batch longer than ``max_poll_interval_ms`` (a database that stops answering does the same):
    the group moves on without this member and its offset commit is rejected."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.stalled = False

    def process(self, batch: Batch) -> None:

        if batch.records and not self.stalled:
            self.stalled = True
            time.sleep(self.seconds)


@pytest.mark.slow
def test_a_rejected_commit_and_the_rebalance_after_it_do_not_stop_the_daemon(sqlite_url, kafka_broker, topic,
                                                                          tmp_path, caplog):
    """A stall longer than max_poll_interval_ms: the broker rejects the commit (CommitFailedError) and the
    member rejoins; the revoke callback must not block on the broker. The daemon goes on, the batch is
    replayed and stored once."""
    from monitor.ingest.steps.aggregate import AggregateStep
    from monitor.storage.db import upgrade

    upgrade(sqlite_url)
    path = write_config(tmp_path / "monitor.toml", db_url=sqlite_url, bootstrap=kafka_broker, topic=topic)
    path.write_text(path.read_text().replace("session_timeout_ms = 6000",
                                             "session_timeout_ms = 6000\nmax_poll_interval_ms = 2000"))
    config = config_for(path)
    produce(kafka_broker, topic, [encode(good_record(i)) for i in range(200)])
    engine = make_engine(sqlite_url)
    steps = [_Stalls(5.0), AggregateStep()]
    with caplog.at_level(logging.INFO), DaemonThread(config, engine=engine, steps=steps) as daemon:
        wait_for(lambda: count(sqlite_url, records) == 200, 60, "the first batch")
        wait_for(lambda: "offset commit rejected" in caplog.text, 30, "the rejected commit")
        produce(kafka_broker, topic, [encode(good_record(i)) for i in range(200, 300)])
        wait_for(lambda: count(sqlite_url, records) == 300, 60, "traffic after the rebalance")
        assert daemon.exit_code is None
        assert daemon.stop() == 0
    assert _counted(sqlite_url) == 300
    assert "User rebalance callback throws an error" not in caplog.text


class _HugeSums(Step):
    """Adds 1e308 to one minute's latency sum with every batch: the second batch overflows the column in
    Postgres ("value out of range"), a failure of the counters, not of any record."""

    def process(self, batch: Batch) -> None:
        from datetime import UTC, datetime

        if batch.records:
            minute = datetime(2026, 1, 1, tzinfo=UTC)
            batch.increments[stream_minutes].append({
                "minute": minute, "model": "m", "app": "", "n": 1, "errors": 0, "toxicity_scored": 0, "toxic": 0,
                "refusal_scored": 0, "refusals": 0, "latency_n": 1, "latency_sum": 1e308, "latency_min": 1.0,
                "latency_max": 1.0, "last_ts": minute, "pii_in_response": 0, "secret_in_response": 0,
                "updated_at": minute})


def test_a_batch_the_database_refuses_for_its_counters_stores_every_record_and_goes_on(postgres_url, caplog):
    """The database refuses a batch and no record is to blame when tried alone (the per-minute sum
    overflowed): every record is still stored with the consumer position, the counter row is left out with
    one ERROR line, and the next batch goes through."""
    import threading

    from monitor.ingest.pipeline import Pipeline
    from monitor.storage.db import upgrade
    from monitor.storage.store import Store, text_policy
    from tests.monitor.ingest.steps.test_aggregate import PartitionLog, traffic

    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    try:
        log = PartitionLog(traffic(90))
        pipeline = Pipeline(log, [_HugeSums()], Store(engine, text_policy("none")), group_id="g", batch_size=30)
        with caplog.at_level(logging.WARNING):
            while pipeline.run_once(threading.Event()):
                pass
        assert count(postgres_url, records) == 90 and count(postgres_url, dead_letters) == 0
        assert log.committed == {("llm-logs", 0): 90}
        assert "database rejected a derived row, left out" in caplog.text
    finally:
        engine.dispose()
