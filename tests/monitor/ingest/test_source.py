"""The Kafka side of the pipeline against a real broker (tansu): group membership as members come and go."""

from __future__ import annotations

import time

from monitor.config import KafkaConfig
from monitor.ingest.source import KafkaSource
from monitor.synthetic.broker import create_topic, delete_topic
from tests.helpers import group_for, produce

SESSION_TIMEOUT_MS = 6000


def _source(kafka_broker: str, topic: str, name: str) -> KafkaSource:
    config = KafkaConfig(bootstrap_servers=[kafka_broker], topics=[topic], group_id=group_for(topic),
                         client_id=name, session_timeout_ms=SESSION_TIMEOUT_MS)
    return KafkaSource(config, max_poll_records=100)


def _poll_until_assigned(sources: list[KafkaSource], partitions: int, timeout_s: float) -> float | None:
    """Seconds until ``sources`` together hold ``partitions`` partitions, each at least one; None if never."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        for source in sources:
            source.poll(100, 200)
        held = [len(source.positions()) for source in sources]
        if all(held) and sum(held) == partitions:
            return time.monotonic() - start
    return None


def test_a_daemon_started_after_two_members_stopped_in_turn_is_assigned_every_partition(kafka_broker, topic):
    """Two daemons (or two workers of one) stop one after the other, the group's leader last, as SIGTERM to a
    ``workers = 2`` daemon or a supervisor killed under its workers does. The daemon started next must get the
    partitions: tansu keeps a leader that leaves while the group is rebalancing as the leader of every later
    rebalance, which then never completes, so the leader lets its session expire instead of leaving."""
    first, second = _source(kafka_broker, topic, "first"), _source(kafka_broker, topic, "second")
    assert _poll_until_assigned([first, second], 3, 90) is not None, "two members never shared the partitions"
    leader, follower = (first, second) if first.leads_group else (second, first)
    assert leader.leads_group and not follower.leads_group
    follower.close()
    leader.close()

    restarted = _source(kafka_broker, topic, "restarted")
    try:
        took = _poll_until_assigned([restarted], 3, SESSION_TIMEOUT_MS / 1000 + 30)
    finally:
        restarted.close()
    assert took is not None, "the restarted daemon was never assigned a partition: the group is wedged"


def test_a_broker_back_from_an_outage_is_tried_again_within_two_seconds(kafka_broker, topic):
    """After a long broker outage kafka-python waits up to ``reconnect_backoff_max_ms`` between attempts; its
    default, 30 s, kept the daemon away from a broker that was back for 25 s in bench/faults' broker_restart."""
    source = _source(kafka_broker, topic, "reconnects")
    try:
        assert source._consumer.config["reconnect_backoff_max_ms"] <= 2000
    finally:
        source.close()


def test_two_members_rejoining_for_a_recreated_topic_one_during_the_others_rebalance_read_every_partition(
        kafka_broker, topic):
    """The topic is recreated with 4 partitions under a group of two (the two workers of one daemon): each member
    notices and, tansu keeping the old assignment, leaves and rejoins the group. Here the second one's turn comes
    while the rebalance the first one started is still going (bench/faults topic_recreated, full size): leaving
    then wedged the group on tansu — no partition assigned to anyone, nothing read, for as long as the broker
    ran. The second member waits for the rebalance to finish before it rejoins, and every partition is read."""
    first, second = _source(kafka_broker, topic, "first"), _source(kafka_broker, topic, "second")
    try:
        assert _poll_until_assigned([first, second], 3, 90) is not None, "two members never shared the partitions"
        if first.leads_group:  # the follower's turn comes first, the leader's mid-rebalance
            first, second = second, first
        first._rejoin_grace_s = second._rejoin_grace_s = 3600.0  # the test says when each one's turn comes
        delete_topic(kafka_broker, topic)
        create_topic(kafka_broker, topic, partitions=4)
        ends = produce(kafka_broker, topic, [b"x"] * 40)
        assert len(ends) == 4
        wanted = {(p, o) for p, end in ends.items() for o in range(end)}
        read: set[tuple[int, int]] = set()

        def poll_both(timeout_ms: int) -> None:
            for source in (first, second):
                read.update((m.partition, m.offset) for m in source.poll(100, timeout_ms) if m.topic == topic)

        deadline = time.monotonic() + 60
        while not (first._rejoin_at and second._rejoin_at) and time.monotonic() < deadline:
            poll_both(200)
        assert first._rejoin_at and second._rejoin_at, "the members never noticed the fourth partition"
        first._rejoin_at = time.monotonic()  # the first one's turn
        while first._rejoin_at is not None or second._coordinator.stable():  # until the second is rebalancing
            assert time.monotonic() < deadline, "the first member's rejoin never started a rebalance"
            poll_both(50)
        second._rejoin_at = time.monotonic()  # the second one's turn, mid-rebalance
        second._rejoin_if_partitions_changed()
        deadline = time.monotonic() + 90
        while not wanted <= read and time.monotonic() < deadline:
            poll_both(200)
        assert wanted <= read, f"the group is wedged: unread {sorted(wanted - read)[:10]}"
    finally:
        first.close()
        second.close()
