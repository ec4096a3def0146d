"""The daemon as an operator runs it: a separate process, killed, restarted, scaled out, stopped."""

from __future__ import annotations

import signal

import pytest
from sqlalchemy import func, select

from monitor.storage.db import make_engine
from monitor.storage.schema import records
from tests.helpers import (
    committed_offsets,
    count,
    encode,
    good_record,
    group_for,
    produce,
    start_daemon_process,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slow


def _distinct_and_total(db_url: str) -> tuple[int, int]:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(records)).scalar_one()
        distinct = conn.execute(select(func.count(func.distinct(records.c.id)))).scalar_one()
    engine.dispose()
    return distinct, total


def test_sigkill_mid_stream_then_restart_stores_every_record_exactly_once(
    migrated_db_url, kafka_broker, topic, tmp_path
):
    n = 20_000
    ends = produce(kafka_broker, topic, (encode(good_record(i)) for i in range(n)))
    config = write_config(tmp_path / "monitor.toml", db_url=migrated_db_url, bootstrap=kafka_broker, topic=topic)

    first = start_daemon_process(config, tmp_path / "first.log")
    wait_for(lambda: count(migrated_db_url, records) > 2_000, 90, "the first daemon to store some records")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    stored_at_kill = count(migrated_db_url, records)
    assert stored_at_kill < n, "the daemon finished before it could be killed; raise n"

    second = start_daemon_process(config, tmp_path / "second.log")
    try:
        wait_for(lambda: count(migrated_db_url, records) >= n, 240, "the restarted daemon to catch up")
        wait_for(lambda: committed_offsets(kafka_broker, topic, group_for(topic)) == ends, 30, "offsets at the end")
    finally:
        second.send_signal(signal.SIGTERM)
        code = second.wait(30)
    assert code == 0, (tmp_path / "second.log").read_text()[-3000:]
    assert _distinct_and_total(migrated_db_url) == (n, n)


def test_two_daemons_in_one_group_share_partitions_and_store_each_record_once(
    migrated_db_url, kafka_broker, topic, tmp_path
):
    config = write_config(tmp_path / "monitor.toml", db_url=migrated_db_url, bootstrap=kafka_broker, topic=topic)
    a = start_daemon_process(config, tmp_path / "a.log")
    b = start_daemon_process(config, tmp_path / "b.log")
    try:
        wait_for(lambda: all("partitions assigned" in (tmp_path / f"{name}.log").read_text() for name in ("a", "b")),
                 90, "both daemons to join the group and split the three partitions")
        n = 6_000
        ends = produce(kafka_broker, topic, (encode(good_record(i)) for i in range(n)))
        wait_for(lambda: count(migrated_db_url, records) >= n, 120, "both daemons to store everything")
        wait_for(lambda: committed_offsets(kafka_broker, topic, group_for(topic)) == ends, 30, "offsets at the end")
    finally:
        for proc in (a, b):
            proc.send_signal(signal.SIGTERM)
        codes = [a.wait(30), b.wait(30)]
    assert codes == [0, 0]
    logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    assert logs.count("partitions assigned") >= 2, "both members should have received partitions"
    assert _distinct_and_total(migrated_db_url) == (n, n)


def test_workers_share_the_partitions_of_one_host_and_stop_cleanly(migrated_db_url, kafka_broker, topic, tmp_path):
    """`[pipeline] workers = 2`: two consumer processes under one supervisor; SIGTERM stops all with 0."""
    config = write_config(tmp_path / "monitor.toml", db_url=migrated_db_url, bootstrap=kafka_broker, topic=topic,
                          extra="workers = 2")
    n = 3_000
    ends = produce(kafka_broker, topic, (encode(good_record(i)) for i in range(n)))
    supervisor = start_daemon_process(config, tmp_path / "workers.log")
    try:
        wait_for(lambda: count(migrated_db_url, records) >= n, 120, "the workers to store everything")
        wait_for(lambda: committed_offsets(kafka_broker, topic, group_for(topic)) == ends, 30, "offsets at the end")
    finally:
        supervisor.send_signal(signal.SIGTERM)
        code = supervisor.wait(60)
    log = (tmp_path / "workers.log").read_text()
    assert code == 0, log[-3000:]
    assert log.count("worker 0 started") == 1 and log.count("worker 1 started") == 1
    assert _distinct_and_total(migrated_db_url) == (n, n)
