"""The Kafka side of the pipeline against a real broker (tansu): group membership as members come and go."""

from __future__ import annotations

import time

from monitor.config import KafkaConfig
from monitor.ingest.source import KafkaSource
from tests.helpers import group_for

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
