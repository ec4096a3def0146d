"""The Kafka side of the pipeline: poll messages, commit offsets, survive rebalances.

Commit policy: offsets are committed only for what the store has made durable. The pipeline tells the
source what is durable (`mark_durable`) and asks it to `commit` after every batch, so when partitions are
revoked in a rebalance there is nothing left to commit for them. The revoke callback runs on kafka-python's
IO thread and must not block on the broker: it commits nothing, it only forgets. Whatever was durable but
not committed is redelivered to the next owner, and the store ignores what it already has.

The source never raises for the broker's sake: a rejected commit (the group rebalanced, e.g. after a stall
longer than ``max_poll_interval_ms``) means "replay is coming"; a broker that is gone is waited out (poll
returns nothing, one WARNING when it goes, one INFO when it is back).

A partition whose position is past its log end (the topic was recreated, or a broker with memory-only
storage restarted empty, while this consumer or its group kept the old position) is re-read from the log
start, with one WARNING naming the partition and the jump. Kafka answers such a fetch with
``OFFSET_OUT_OF_RANGE`` and kafka-python resets by ``auto_offset_reset``; tansu answers with nothing at all,
so the source compares each partition's position with the log end the fetches report, and a partition seen
past its end at two checks in a row (``end_check_s`` apart) is moved back.

Partitions added to a topic (or a topic back with another partition count) are noticed at the next metadata
refresh (``[kafka] metadata_max_age_ms``). Kafka then rebalances the group onto them by itself; tansu keeps
the old assignment, so once the partition count of a subscribed topic changed the source leaves and rejoins
the group (once per change, after ``session_timeout_ms`` and a few seconds of grace, with one INFO line; never
in the middle of a rebalance, which wedges a tansu group): every partition is then assigned within seconds on
either broker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError, IllegalStateError, KafkaError

from monitor.config import KafkaConfig
from monitor.ingest.batch import Message
from monitor.ops import metrics

log = logging.getLogger(__name__)

RECONNECT_BACKOFF_MAX_MS = 2000
"""Longest wait between two attempts to reach a broker that is down. kafka-python's default (30 s) left the
daemon blind for up to 30 s after the broker was back (bench/faults broker_restart: 25 s); a refused connection
every 2 s costs nothing, and `monitor.app.logs.BrokerOutageFilter` keeps the failures out of the log."""

BOOTSTRAP_TIMEOUT_MS = 5000
"""How long building the consumer waits for a first answer from a bootstrap server before it gives up, and the
daemon's own wait (`monitor.app.daemon.wait_for_service`) tries again. kafka-python's default (30 s) held
``__init__`` that long: a daemon started before its broker said "Kafka … not answering" only after 30 s, and a
SIGTERM then (Kubernetes stopping a pod that never got ready) took up to 30 s, its whole default grace period,
to take effect."""

COORDINATOR_GRACE_S = 5.0
"""How long the group's coordinator may be unreachable before the source says the broker is gone: a
coordinator moving to another broker takes a moment on real Kafka, and is not an outage."""

PartitionCallback = Callable[[set[tuple[str, int]]], None]
RewindCallback = Callable[[tuple[str, int], int, int], None]
"""(partition, position it was at, position it was moved back to)."""


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
        *,
        end_check_s: float = 2.0,
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
            "metadata_max_age_ms": config.metadata_max_age_ms,
            "max_poll_records": max_poll_records,
            "fetch_max_bytes": 64 * 1024 * 1024,
            "max_partition_fetch_bytes": 8 * 1024 * 1024,
            "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
            "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
            **config.client_options(),
        }
        self._consumer = KafkaConsumer(**options)
        self._topics = list(config.topics)
        self._consumer.subscribe(self._topics, listener=_Listener(self))
        self._partition_counts: dict[str, frozenset[int]] = {}
        self._rejoin_at: float | None = None
        self._session_timeout_s = config.session_timeout_ms / 1000
        self._rejoin_grace_s = self._session_timeout_s + 3.0
        self._durable: dict[tuple[str, int], int] = {}
        self._committed: dict[tuple[str, int], int] = {}
        self._user_on_assigned = on_assigned
        self._user_on_revoked = on_revoked
        self._broker_trouble_since: float | None = None
        self.on_rewound: RewindCallback | None = None
        """Told when a partition past its log end is moved back (the pipeline then expects the jump)."""
        self._end_check_s = end_check_s
        self._last_end_check = time.monotonic()
        self._past_end: dict[tuple[str, int], int] = {}
        self._assigned: set[tuple[str, int]] = set()
        self._member = False
        self._led = False
        self._coordinator_seen = False
        self._coordinator_lost_at: float | None = None

    @property
    def _coordinator(self) -> Any:
        """kafka-python's group coordinator (a private attribute: None if a version moves it)."""
        return getattr(self._consumer, "_coordinator", None)

    @property
    def leads_group(self) -> bool:
        """Whether this member computed the group's assignment at its last rebalance (the group's leader), or
        may still be taken for the leader by the broker (elected, then asked to rejoin)."""
        return self._led or bool(getattr(self._coordinator, "_is_leader", False))

    # -- the pipeline's view ------------------------------------------------------------------------------

    def poll(self, max_records: int, timeout_ms: int) -> list[Message]:
        """Up to ``max_records`` messages across assigned partitions, in offset order per partition."""
        try:
            fetched = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            self._broker_trouble(exc)
            time.sleep(min(timeout_ms, 1000) / 1000)
            return []
        lost = self._coordinator_lost()  # says so once; what was fetched (other brokers' partitions) still counts
        if self._broker_trouble_since is not None and not lost:
            log.info("broker answering again after %.1f s", time.monotonic() - self._broker_trouble_since)
            self._broker_trouble_since = None
        if time.monotonic() - self._last_end_check >= self._end_check_s:
            self._last_end_check = time.monotonic()
            self._rewind_past_end()
            self._rejoin_if_partitions_changed()
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
        except CommitFailedError:
            # The group rebalanced under us: the new owner will redeliver; the store ignores duplicates.
            log.warning("offset commit rejected (the group rebalanced); records since the last commit will be "
                        "redelivered and stored once")
            return False
        except KafkaError as exc:  # coordinator moved, broker gone, timeout: the next batch commits again
            self._broker_trouble(exc)
            return False
        self._committed.update(pending)
        return True

    def _rewind_past_end(self) -> None:
        """Move every partition seen past its log end at this check and the last one back to its log start."""
        seen: dict[tuple[str, int], int] = {}
        for tp in self._consumer.assignment():
            key = (tp.topic, tp.partition)
            try:
                end = self._consumer.highwater(tp)
                position = self._consumer.position(tp, timeout_ms=0) if end is not None else None
            except Exception as exc:  # noqa: BLE001 - not known yet: checked again next time
                log.debug("position of %s[%d] not known: %s", tp.topic, tp.partition, exc)
                continue
            if end is None or position is None or position <= end:
                continue
            if self._past_end.get(key) != end:
                seen[key] = end  # first sighting: the log end may be one fetch behind
                continue
            try:
                start = int(self._consumer.beginning_offsets([tp], timeout_ms=2000)[tp])
                self._consumer.seek(tp, start)
            except Exception as exc:  # noqa: BLE001 - the broker is busy: tried again at the next check
                log.debug("could not move %s[%d] to its log start: %s", tp.topic, tp.partition, exc)
                seen[key] = end
                continue
            log.warning("%s[%d]: position %d is past the log end %d (topic recreated, or the broker restarted "
                        "empty); re-reading from the log start %d, %d offsets back", tp.topic, tp.partition,
                        position, end, start, position - start)
            if self.on_rewound is not None:
                self.on_rewound(key, position, start)
        self._past_end = seen

    def _rejoin_if_partitions_changed(self) -> None:
        """Leave and rejoin the group once, a grace period after a subscribed topic's partitions changed."""
        for topic in self._topics:
            try:
                now = frozenset(self._consumer.partitions_for_topic(topic) or ())
            except Exception as exc:  # noqa: BLE001 - metadata not available now: checked again next time
                log.debug("partitions of %s not known: %s", topic, exc)
                continue
            before = self._partition_counts.get(topic)
            if not now or now == before:
                continue
            self._partition_counts[topic] = now
            if before is not None:
                log.info("%s now has %d partition(s), had %d; making sure the group is assigned all of them",
                         topic, len(now), len(before))
                self._rejoin_at = time.monotonic() + self._rejoin_grace_s
        if self._rejoin_at is not None and time.monotonic() >= self._rejoin_at:
            coordinator = self._coordinator
            stuck = time.monotonic() >= self._rejoin_at + self._session_timeout_s
            if coordinator is not None and not coordinator.stable() and not stuck:
                # Mid-rebalance (another member's rejoin started it): leaving now wedges the group on tansu,
                # as in `close`. Rejoin once this rebalance is over; it may already hand out every partition.
                # A rebalance still going a session timeout later is stuck (a broker restarted empty forgot
                # the group mid-join): leaving and rejoining is then what unsticks it.
                return
            self._rejoin_at = None
            log.info("rejoining the consumer group so that every partition of %s is assigned", ",".join(self._topics))
            held = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
            self._consumer.unsubscribe()  # gives the partitions up without calling the listener: tell it here
            self._on_revoked(held)
            self._consumer.subscribe(self._topics, listener=_Listener(self))

    def _coordinator_lost(self) -> bool:
        """Whether the group's coordinator has been unreachable for `COORDINATOR_GRACE_S` (then said once, as
        broker trouble). kafka-python's poll does not raise while the broker is down — it reconnects in the
        background and returns nothing — so without this the daemon's own log never said the broker was gone,
        only kafka-python's lines did. Read without side effects (kafka-python's ``coordinator()`` would mark
        it dead); not before the coordinator was first found (a start is not an outage)."""
        coordinator = self._coordinator
        client = getattr(self._consumer, "_client", None)
        if coordinator is None or client is None:
            return False
        node = getattr(coordinator, "coordinator_id", None)
        if node is not None and not client.is_disconnected(node):
            self._coordinator_seen, self._coordinator_lost_at = True, None
            return False
        if not self._coordinator_seen:
            return False
        now = time.monotonic()
        if self._coordinator_lost_at is None:
            self._coordinator_lost_at = now
        if now - self._coordinator_lost_at < COORDINATOR_GRACE_S:
            return False
        if self._broker_trouble_since is None:
            self._broker_trouble(ConnectionError(
                f"the consumer group's coordinator has not answered for {now - self._coordinator_lost_at:.0f} s"),
                since=self._coordinator_lost_at)
        return True

    def _broker_trouble(self, exc: Exception, since: float | None = None) -> None:
        """One WARNING when the broker stops answering; details of later failures at DEBUG. ``since``: when the
        trouble began, if before now (what "answering again after N s" counts from)."""
        if self._broker_trouble_since is None:
            self._broker_trouble_since = time.monotonic() if since is None else since
            log.warning("Kafka unavailable (%s: %s); waiting for it", type(exc).__name__, exc)
        else:
            log.debug("Kafka still unavailable: %s", exc)

    def positions(self, skip: Iterable[tuple[str, int]] = ()) -> dict[tuple[str, int], int]:
        """Next offset to read of each assigned partition not in ``skip`` (asks the broker when not yet known,
        for at most a second; a partition whose position is still unknown is left out)."""
        known: dict[tuple[str, int], int] = {}
        skipped = set(skip)
        for tp in self._consumer.assignment():
            if (tp.topic, tp.partition) in skipped:
                continue
            try:
                known[(tp.topic, tp.partition)] = int(self._consumer.position(tp, timeout_ms=1000))
            except Exception as exc:  # noqa: BLE001 - a position not known yet is asked for again next batch
                log.debug("position of %s[%d] not known yet: %s", tp.topic, tp.partition, exc)
        return known

    def highwater(self, topic: str, partition: int) -> int | None:
        """Log end offset as last seen by the fetcher (fresher than end_offsets() on some brokers); None when
        not known, or the partition is no longer assigned here."""
        try:
            return self._consumer.highwater(TopicPartition(topic, partition))
        except IllegalStateError:
            return None

    def pause(self) -> None:
        """Stop fetching (backpressure) while staying in the group: keep calling `poll`, it returns nothing."""
        self._consumer.pause(*self._consumer.assignment())

    def resume(self) -> None:
        self._consumer.resume(*self._consumer.paused())

    def close(self, commit: bool = True) -> None:
        """Leave the group. ``commit=False`` when the last batch is not durable (shutdown during an outage).

        A follower of a settled group says so (LeaveGroup): its partitions move at once. The group's leader,
        and a member caught in a rebalance (the broker may have just elected it), let their session expire
        instead, and the broker elects another leader after ``session_timeout_ms``. tansu keeps a leader that
        leaves while the group is rebalancing as the leader of every later rebalance, and none of them can
        complete: the members that stay or join next wait for an assignment for as long as the broker runs
        (the two workers of a daemon stopping together, the follower first, are enough). On Kafka, staying
        silent only delays the hand-over of the leader's own partitions by the session timeout."""
        if commit:
            try:
                self.commit()
            except KafkaError as exc:
                log.warning("final commit failed: %s", exc)
        coordinator, leads = self._coordinator, self.leads_group
        if coordinator is not None and (leads or not coordinator.stable()):
            if leads:
                log.info("this member leads the consumer group: leaving it by session expiry, so its partitions "
                         "move to the other members in about %.0f s", self._session_timeout_s)
            coordinator.reset_generation()  # membership forgotten here: close() sends no LeaveGroup
        self._consumer.close(autocommit=False)
        self._membership(set(), member=False)

    def _membership(self, assigned: set[tuple[str, int]], *, member: bool) -> None:
        """``watchkeeper_consumers`` and ``watchkeeper_assigned_partitions`` (what ``/readyz`` reads)."""
        metrics.ASSIGNED.inc(len(assigned) - len(self._assigned))
        self._assigned = assigned
        if member != self._member:
            metrics.CONSUMERS.inc(1 if member else -1)
            self._member = member

    # -- rebalance hooks ------------------------------------------------------------------------------

    def _on_revoked(self, revoked: set[tuple[str, int]]) -> None:
        """Runs on kafka-python's IO thread: no commit here (a synchronous commit cannot run on that thread,
        and the pipeline commits after every batch anyway); what was durable but uncommitted is replayed."""
        if revoked:
            log.info("partitions revoked: %s", sorted(revoked))
        for key in revoked:
            self._durable.pop(key, None)
            self._committed.pop(key, None)
        self._membership(self._assigned - revoked, member=self._member)
        if self._user_on_revoked:
            self._user_on_revoked(revoked)

    def _on_assigned(self, assigned: set[tuple[str, int]]) -> None:
        log.info("partitions assigned: %s", sorted(assigned))
        self._led = bool(getattr(self._coordinator, "_is_leader", False))
        self._membership(self._assigned | assigned, member=True)
        if self._user_on_assigned:
            self._user_on_assigned(assigned)
