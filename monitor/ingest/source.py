"""The Kafka side of the pipeline: poll messages, commit offsets, survive rebalances.

Commit policy: offsets are committed only for what the store has made durable. The pipeline tells the
source what is durable (`mark_durable`) and asks it to `commit`. When partitions are revoked in a
rebalance, the source commits what is durable for them before giving them up, so the next owner starts
exactly after the last stored batch (anything later is redelivered, and the store ignores duplicates).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError, KafkaError

from monitor.config import KafkaConfig
from monitor.ingest.batch import Message

log = logging.getLogger(__name__)

PartitionCallback = Callable[[set[tuple[str, int]]], None]


class _Listener(ConsumerRebalanceListener):
    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._source._on_revoked({(tp.topic, tp.partition) for tp in revoked})

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._source._on_assigned({(tp.topic, tp.partition) for tp in assigned})


class KafkaSource:
    """A kafka-python consumer in a group, with manual, durable-only commits."""

    def __init__(
        self,
        config: KafkaConfig,
        max_poll_records: int,
        on_assigned: PartitionCallback | None = None,
        on_revoked: PartitionCallback | None = None,
    ) -> None:
        options: dict[str, Any] = {
            "bootstrap_servers": config.bootstrap_servers,
            "group_id": config.group_id,
            "client_id": config.client_id,
            "enable_auto_commit": False,
            "auto_offset_reset": config.auto_offset_reset,
            "session_timeout_ms": config.session_timeout_ms,
            "heartbeat_interval_ms": max(300, config.session_timeout_ms // 4),
            "max_poll_interval_ms": config.max_poll_interval_ms,
            "max_poll_records": max_poll_records,
            "fetch_max_bytes": 64 * 1024 * 1024,
            "max_partition_fetch_bytes": 8 * 1024 * 1024,
            "security_protocol": config.security_protocol,
        }
        if config.sasl_mechanism:
            options["sasl_mechanism"] = config.sasl_mechanism
            options["sasl_plain_username"] = config.sasl_username
            if config.sasl_password is not None:
                options["sasl_plain_password"] = config.sasl_password.get_secret_value()
        self._consumer = KafkaConsumer(**options)
        self._consumer.subscribe(config.topics, listener=_Listener(self))
        self._durable: dict[tuple[str, int], int] = {}
        self._committed: dict[tuple[str, int], int] = {}
        self._user_on_assigned = on_assigned
        self._user_on_revoked = on_revoked

    # -- the pipeline's view ------------------------------------------------------------------------------

    def poll(self, max_records: int, timeout_ms: int) -> list[Message]:
        """Up to ``max_records`` messages across assigned partitions, in offset order per partition."""
        fetched = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        if not fetched:
            return []
        if len(fetched) == 1:
            return next(iter(fetched.values()))
        out: list[Message] = []
        for messages in fetched.values():
            out.extend(messages)
        return out

    def mark_durable(self, next_offsets: dict[tuple[str, int], int]) -> None:
        """Record that everything before these offsets is stored."""
        for key, offset in next_offsets.items():
            if offset > self._durable.get(key, -1):
                self._durable[key] = offset

    def commit(self, only: set[tuple[str, int]] | None = None) -> bool:
        """Commit durable offsets (all, or ``only`` these partitions). False if the group moved on."""
        pending = {
            key: off for key, off in self._durable.items()
            if (only is None or key in only) and self._committed.get(key) != off
        }
        if not pending:
            return True
        try:
            self._consumer.commit(
                {TopicPartition(t, p): OffsetAndMetadata(off, "", -1) for (t, p), off in pending.items()}
            )
        except CommitFailedError as exc:
            # The group rebalanced under us: the new owner will redeliver; the store ignores duplicates.
            log.warning("offset commit rejected after a rebalance (%s); records will be redelivered", exc)
            return False
        self._committed.update(pending)
        return True

    def highwater(self, topic: str, partition: int) -> int | None:
        """Log end offset as last seen by the fetcher (fresher than end_offsets() on some brokers)."""
        return self._consumer.highwater(TopicPartition(topic, partition))

    def pause(self) -> None:
        """Stop fetching (backpressure) while staying in the group: keep calling `poll`, it returns nothing."""
        self._consumer.pause(*self._consumer.assignment())

    def resume(self) -> None:
        self._consumer.resume(*self._consumer.paused())

    def close(self, commit: bool = True) -> None:
        """Leave the group. ``commit=False`` when the last batch is not durable (shutdown during an outage)."""
        if commit:
            try:
                self.commit()
            except KafkaError as exc:
                log.warning("final commit failed: %s", exc)
        self._consumer.close(autocommit=False)

    # -- rebalance hooks ------------------------------------------------------------------------------

    def _on_revoked(self, revoked: set[tuple[str, int]]) -> None:
        if revoked:
            log.info("partitions revoked: %s", sorted(revoked))
            try:
                self.commit(only=revoked)
            except KafkaError as exc:
                log.warning("commit on revocation failed: %s", exc)
        for key in revoked:
            self._durable.pop(key, None)
            self._committed.pop(key, None)
        if self._user_on_revoked:
            self._user_on_revoked(revoked)

    def _on_assigned(self, assigned: set[tuple[str, int]]) -> None:
        log.info("partitions assigned: %s", sorted(assigned))
        if self._user_on_assigned:
            self._user_on_assigned(assigned)
