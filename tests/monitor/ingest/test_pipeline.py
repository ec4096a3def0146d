"""Ingest end to end: Kafka → decode/validate → database → commit, against a real broker and databases."""

from __future__ import annotations

import orjson
from sqlalchemy import select

from monitor.storage.db import make_engine
from monitor.storage.schema import consumer_progress, dead_letters, records
from tests.helpers import (
    DaemonThread,
    committed_offsets,
    config_for,
    count,
    encode,
    good_record,
    group_for,
    produce,
    wait_for,
    write_config,
)

MALFORMED = [
    (b"{not json", "not valid UTF-8 JSON"),
    (b'{"ts": 1, "model": "m", "prompt": "p", "response": "r"}', "missing required field 'id'"),
    (b'{"id": "x1", "ts": 1, "model": "m", "prompt": "p", "response": "r", "latency_ms": "fast"}',
     "field 'latency_ms' must be a finite number"),
    (b"[1, 2, 3]", "must be a JSON object"),
    (b"\xff\xfe garbage", "not valid UTF-8 JSON"),
    (None, "empty message"),
]


def test_accepted_records_are_stored_rejects_dead_lettered_and_offsets_committed(
    migrated_db_url, kafka_broker, topic, tmp_path
):
    good = [good_record(i) for i in range(300)]
    values = [encode(r) for r in good] + [raw for raw, _ in MALFORMED]
    ends = produce(kafka_broker, topic, values)
    config = config_for(write_config(tmp_path / "monitor.toml", db_url=migrated_db_url,
                                     bootstrap=kafka_broker, topic=topic, extra='store_text = "full"'))

    with DaemonThread(config) as daemon:
        wait_for(lambda: count(migrated_db_url, records) + count(migrated_db_url, dead_letters) >= len(values),
                 60, "every message to be stored")
        assert daemon.stop() == 0

    engine = make_engine(migrated_db_url)
    with engine.connect() as conn:
        stored = {row.id: row for row in conn.execute(select(records))}
        letters = conn.execute(select(dead_letters)).all()
        progress = conn.execute(select(consumer_progress)).all()
    engine.dispose()

    assert set(stored) == {r["id"] for r in good}
    sample = stored["req-000007"]
    assert (sample.model, sample.app, sample.latency_ms, sample.tokens_out) == ("m-small", "search", 207.0, 15)
    assert sample.response_chars == len(good[7]["response"])
    assert sample.prompt == good[7]["prompt"]  # store_text = "full"

    assert len(letters) == len(MALFORMED)
    by_raw = {bytes(letter.raw) if letter.raw is not None else None: letter.reason for letter in letters}
    for raw, reason in MALFORMED:
        assert reason in by_raw[raw], (raw, by_raw[raw])
    assert all(letter.topic == topic for letter in letters)

    assert committed_offsets(kafka_broker, topic, group_for(topic)) == ends
    assert {(p.partition, p.committed) for p in progress} == set(ends.items())


def test_a_replayed_batch_stores_nothing_twice(migrated_db_url, kafka_broker, topic, tmp_path):
    """The same records arriving again (a producer retry, or a replay after a crash) are ignored."""
    first = [encode(good_record(i)) for i in range(100)]
    produce(kafka_broker, topic, first + first[:40] + [b"{broken"])
    config = config_for(write_config(tmp_path / "monitor.toml", db_url=migrated_db_url,
                                     bootstrap=kafka_broker, topic=topic))
    with DaemonThread(config):
        wait_for(lambda: count(migrated_db_url, dead_letters) == 1 and count(migrated_db_url, records) == 100,
                 60, "records and the dead letter")
    # Run a second member of a *new* group over the same topic: everything is redelivered.
    config = config_for(write_config(tmp_path / "again.toml", db_url=migrated_db_url, bootstrap=kafka_broker,
                                     topic=topic, group=group_for(topic) + "-replay"))
    with DaemonThread(config) as daemon:
        wait_for(lambda: daemon.daemon.pipeline.counters.messages >= 141, 60, "the replay to be consumed")
    assert count(migrated_db_url, records) == 100
    assert count(migrated_db_url, dead_letters) == 1


def test_default_store_text_keeps_no_raw_text_without_redaction(migrated_db_url, kafka_broker, topic, tmp_path):
    """store_text defaults to "redacted": with no redacted text available, nothing raw is written."""
    produce(kafka_broker, topic, [encode(good_record(1, response="my key is AKIA4HKQ2ZP7LW3NXR6T"))])
    config = config_for(write_config(tmp_path / "monitor.toml", db_url=migrated_db_url,
                                     bootstrap=kafka_broker, topic=topic))
    with DaemonThread(config, steps=[]):
        wait_for(lambda: count(migrated_db_url, records) == 1, 60, "the record")
    engine = make_engine(migrated_db_url)
    with engine.connect() as conn:
        row = conn.execute(select(records.c.prompt, records.c.response)).one()
    engine.dispose()
    assert "AKIA" not in orjson.dumps(list(row)).decode()


def test_database_outage_pauses_and_retries_then_stores_everything_once(
    postgres_url, kafka_broker, topic, tmp_path, caplog
):
    """Postgres goes away mid-stream (the network to it is cut): the daemon neither crashes nor skips."""
    from sqlalchemy import make_url

    from monitor.storage.db import upgrade
    from tests.tcp_proxy import TcpProxy

    upgrade(postgres_url)
    url = make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    via_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    config = config_for(write_config(tmp_path / "monitor.toml", db_url=via_proxy, bootstrap=kafka_broker,
                                     topic=topic))
    ends = produce(kafka_broker, topic, [encode(good_record(i)) for i in range(200)])
    try:
        with DaemonThread(config, steps=[]) as daemon:
            wait_for(lambda: count(postgres_url, records) == 200, 60, "the first records")
            proxy.cut()
            more = produce(kafka_broker, topic, [encode(good_record(i)) for i in range(200, 500)])
            wait_for(lambda: daemon.daemon.pipeline.counters.storage_retries >= 2, 30, "retries during the outage")
            assert count(postgres_url, records) == 200
            proxy.restore()
            wait_for(lambda: count(postgres_url, records) == 500, 60, "the backlog after the outage")
            assert daemon.stop() == 0
    finally:
        proxy.close()
    assert "database unavailable" in caplog.text
    assert committed_offsets(kafka_broker, topic, group_for(topic)) == {p: max(ends.get(p, 0), more.get(p, 0))
                                                                for p in set(ends) | set(more)}
