"""`watchkeeper produce` against a real Kafka-protocol broker (tansu, from tests/conftest.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
import pytest
from click.testing import CliRunner
from kafka import KafkaConsumer, TopicPartition

from monitor.cli.produce import produce
from monitor.ingest.record import decode
from monitor.synthetic.generator import TrafficGenerator
from monitor.synthetic.produce import produce_to_kafka


def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list:  # type: ignore[type-arg]
    """Every message on ``topic`` (all partitions, from the beginning), waiting for ``expected`` of them."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000)
    try:
        deadline = time.monotonic() + timeout_s
        while not (partitions := consumer.partitions_for_topic(topic)) and time.monotonic() < deadline:
            time.sleep(0.1)
        tps = [TopicPartition(topic, p) for p in sorted(partitions or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        messages: list = []  # type: ignore[type-arg]
        while len(messages) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                messages.extend(batch)
        return messages
    finally:
        consumer.close()


def test_generated_traffic_lands_on_the_topic_intact(kafka_broker: str, topic: str) -> None:
    generated = list(TrafficGenerator(seed=8, malformed_share=0.05,
                                      start=datetime(2026, 3, 1, tzinfo=UTC)).generate(2000))
    assert produce_to_kafka(kafka_broker, topic, generated) == 2000

    received = read_topic(kafka_broker, topic, 2000)
    assert len(received) == 2000
    assert sorted((m.key or b"", m.value) for m in received if m.value is not None) == \
        sorted((g.key or b"", g.value) for g in generated if g.value is not None)
    assert sum(m.value is None for m in received) == sum(g.value is None for g in generated) > 0
    # A session's records share a key, so they stay in order on one partition.
    by_session: dict[bytes, set[int]] = {}
    for m in received:
        if m.value is not None and m.key is not None:
            by_session.setdefault(m.key, set()).add(m.partition)
    assert all(len(parts) == 1 for parts in by_session.values())


def test_the_command_produces_synthetic_traffic_with_incidents(kafka_broker: str, topic: str) -> None:
    result = CliRunner().invoke(produce, [
        "--bootstrap-servers", kafka_broker, "--topic", topic, "-n", "600", "--seed", "3",
        "--incident", "toxic_burst@100+200:magnitude=1", "--malformed-share", "0.1",
    ])
    assert result.exit_code == 0, result.output
    assert "produced 600 messages" in result.output and "1 incidents" in result.output

    received = read_topic(kafka_broker, topic, 600)
    assert len(received) == 600
    good = [decode(m.value) for m in received if _decodes(m.value)]
    assert 450 < len(good) < 590
    assert sum("fuck" in r.response.lower() for r in good) > 150


def test_the_command_spreads_messages_over_time_at_the_requested_rate(kafka_broker: str, topic: str) -> None:
    result = CliRunner().invoke(produce, ["--bootstrap-servers", kafka_broker, "--topic", topic,
                                          "-n", "100", "--rate", "200"])
    assert result.exit_code == 0, result.output
    received = read_topic(kafka_broker, topic, 100)
    assert len(received) == 100
    # Not one burst: the producer's timestamps span the half second that 100 messages at 200/s need.
    created = sorted(m.timestamp for m in received)
    assert created[-1] - created[0] >= 450


def test_replaying_a_users_own_file_sends_each_line_verbatim(kafka_broker: str, topic: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lines = [
        b'{"id":"a1","ts":"2026-03-01T10:00:00Z","model":"in-house-7b","prompt":"hi","response":"hello"}',
        b'{"id": "a2", "ts": 1772359200000, "model": "in-house-7b", "prompt": "\xc3\xa9t\xc3\xa9", "response": ""}',
        b"not json at all, still a message",
        b'{"id":"a3","ts":0,"model":"m","prompt":"tab\\there","response":"ok"}   ',
    ]
    path = tmp_path / "mine.jsonl"
    path.write_bytes(b"\n".join(lines[:2]) + b"\n\n" + b"\n".join(lines[2:]))  # a blank line is skipped

    result = CliRunner().invoke(produce, ["--bootstrap-servers", kafka_broker, "--topic", topic,
                                          "--file", str(path)])
    assert result.exit_code == 0, result.output
    assert "replayed 4 lines" in result.output
    received = read_topic(kafka_broker, topic, 4)
    assert sorted(m.value for m in received) == sorted(lines)


def test_out_writes_jsonl_and_truth_instead_of_kafka(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out, truth = tmp_path / "traffic.jsonl", tmp_path / "truth.jsonl"
    result = CliRunner().invoke(produce, ["-n", "250", "--seed", "4", "--out", str(out), "--truth", str(truth),
                                          "--incident", "pii_leak@0+250:magnitude=1"])
    assert result.exit_code == 0, result.output
    values = out.read_bytes().splitlines()
    truths = [orjson.loads(line) for line in truth.read_bytes().splitlines()]
    assert len(values) == len(truths) == 250
    leaked = [t for t in truths if t["pii_response"]]
    assert len(leaked) > 200 and all(t["incidents"] == ["pii_leak"] for t in truths)


@pytest.mark.parametrize(("args", "message"), [
    (["--incident", "toxic_burst@oops"], "kind@start+duration"),
    (["--file", "x.jsonl", "--out", "y.jsonl"], "does not exist"),
    (["--truth", "t.jsonl"], "give --out too"),
])
def test_bad_invocations_say_what_is_wrong(args: list[str], message: str) -> None:
    result = CliRunner().invoke(produce, args)
    assert result.exit_code == 2
    assert message in result.output


def test_an_unreachable_broker_is_one_clear_error() -> None:
    from monitor.synthetic.broker import free_port

    result = CliRunner().invoke(produce, ["--bootstrap-servers", f"127.0.0.1:{free_port()}", "-n", "5",
                                          "--connect-timeout", "1"])
    assert result.exit_code == 1
    assert "cannot produce to" in result.output


def test_topic_and_servers_come_from_the_environment(kafka_broker: str, topic: str) -> None:
    env = {"WATCHKEEPER_KAFKA_BOOTSTRAP_SERVERS": kafka_broker, "WATCHKEEPER_KAFKA_TOPICS": f"{topic},other"}
    result = CliRunner().invoke(produce, ["-n", "20"], env=env)
    assert result.exit_code == 0, result.output
    assert f"to {topic} at {kafka_broker}" in result.output
    assert len(read_topic(kafka_broker, topic, 20)) == 20


def _decodes(value: bytes | None) -> bool:
    try:
        decode(value)
    except ValueError:
        return False
    return True
