"""Runs the data path described in `monitor.ingest.chain`, one batch at a time, and nothing else.

The steps between decode and persist are chosen in `monitor.ingest.chain.build_steps`; each is a
`monitor.ingest.steps.Step`.

One iteration takes one poll's worth of messages through the steps and stores the result in one
transaction; only then are the offsets committed. Guarantees a caller may rely on:

* at-least-once: an offset is committed only after every row derived from the messages before it is
  durable; a crash anywhere replays from the last commit, and the store ignores rows it already has;
* nothing is dropped: a message that fails validation, or that the database itself rejects, becomes a
  `dead_letters` row with its raw bytes and the reason;
* backpressure: while the database is unreachable the pipeline pauses fetching, keeps its group
  membership, and retries with exponential backoff until the write succeeds or it is told to stop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from monitor.ingest.batch import Batch, DeadLetter, Message
from monitor.ingest.formats import Decoder, decode_foreign
from monitor.ingest.record import RecordError, decode
from monitor.ingest.steps import Step
from monitor.storage.schema import consumer_progress
from monitor.storage.store import PermanentStorageError, Store, TransientStorageError

log = logging.getLogger(__name__)


class Source(Protocol):
    def poll(self, max_records: int, timeout_ms: int) -> list[Message]: ...
    def mark_durable(self, next_offsets: dict[tuple[str, int], int]) -> None: ...
    def commit(self, only: set[tuple[str, int]] | None = None) -> bool: ...
    def highwater(self, topic: str, partition: int) -> int | None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...


class StoppedDuringOutage(RuntimeError):
    """Asked to stop while the database was unreachable: the batch in hand was not stored or committed."""


@dataclass
class Counters:
    """What the pipeline has done since start; read by the status line and logs."""

    messages: int = 0
    records: int = 0
    dead_letters: int = 0
    skipped: int = 0
    """Items of foreign-format messages that are not LLM calls (non-GenAI spans), skipped by design."""
    batches: int = 0
    storage_retries: int = 0
    lag: int | None = None


def decode_messages(messages: Sequence[Message], fields: Mapping[str, str] | None = None,
                    decoders: Mapping[str, Decoder] | None = None) -> Batch:
    """The decode step: valid records into ``batch.records``, the rest into ``batch.dead_letters``.

    A topic in ``decoders`` is read by its format's decoder (`monitor.ingest.formats`: one message, any
    number of records); every other topic is our JSON record, one per message."""
    batch = Batch(received_at=datetime.now(UTC))
    for message in messages:
        if decoders and message.topic in decoders:
            decode_foreign(decoders[message.topic], message, batch)
            continue
        try:
            record = decode(message.value, fields)
        except RecordError as exc:
            batch.dead_letters.append(DeadLetter(
                message.topic, message.partition, message.offset, message.key, message.value, str(exc)
            ))
        else:
            record.topic, record.partition, record.offset = message.topic, message.partition, message.offset
            batch.records.append(record)
            batch.raw[record.id] = message.value
        key = (message.topic, message.partition)
        if message.offset + 1 > batch.next_offsets.get(key, -1):
            batch.next_offsets[key] = message.offset + 1
    return batch


class Pipeline:
    """Runs the chain until ``stop`` is set. Build one per daemon; it owns no threads."""

    def __init__(
        self,
        source: Source,
        steps: Sequence[Step],
        store: Store,
        *,
        group_id: str,
        batch_size: int = 2000,
        batch_timeout_ms: int = 500,
        fields: Mapping[str, str] | None = None,
        decoders: Mapping[str, Decoder] | None = None,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        progress_every_s: float = 5.0,
        stop_grace_s: float = 10.0,
    ) -> None:
        self.source = source
        self.steps = list(steps)
        self.store = store
        self.group_id = group_id
        self.batch_size = batch_size
        self.batch_timeout_ms = batch_timeout_ms
        self.fields = dict(fields or {})
        self.decoders = dict(decoders or {})
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.progress_every_s = progress_every_s
        self.stop_grace_s = stop_grace_s
        self.counters = Counters()
        self._last_progress = 0.0
        self._positions: dict[tuple[str, int], int] = {}
        self._last_ts: dict[tuple[str, int], datetime] = {}

    def run(self, stop: threading.Event) -> None:
        """Process batches until ``stop`` is set; the batch in hand is finished and committed first."""
        while not stop.is_set():
            self.run_once(stop)
        self.source.commit()

    def run_once(self, stop: threading.Event | None = None) -> int:
        """One batch through the chain. Returns the number of messages it carried (0 when idle)."""
        messages = self.source.poll(self.batch_size, self.batch_timeout_ms)
        if not messages:
            if time.monotonic() - self._last_progress >= self.progress_every_s:
                self._persist(Batch(received_at=datetime.now(UTC)), stop)
            return 0
        batch = decode_messages(messages, self.fields, self.decoders)
        for step in self.steps:
            step.process(batch)
        self._persist(batch, stop)
        self.source.mark_durable(batch.next_offsets)
        self.source.commit()
        c = self.counters
        c.messages += len(messages)
        c.records += len(batch.records)
        c.dead_letters += len(batch.dead_letters)
        c.skipped += batch.skipped
        c.batches += 1
        return len(messages)

    def close(self) -> None:
        for step in self.steps:
            step.close()

    # -- persist, with backpressure and poison isolation -------------------------------------------------

    def _persist(self, batch: Batch, stop: threading.Event | None) -> None:
        self._add_progress(batch)
        delay = self.retry_initial_s
        stop_seen_at: float | None = None
        paused = False
        while True:
            try:
                self.store.write(batch)
                break
            except TransientStorageError as exc:
                self.counters.storage_retries += 1
                if stop is not None and stop.is_set():
                    stop_seen_at = stop_seen_at or time.monotonic()
                    if time.monotonic() - stop_seen_at > self.stop_grace_s:
                        raise StoppedDuringOutage(
                            f"database unreachable at shutdown ({exc}); {len(batch)} messages not stored, "
                            "they will be redelivered"
                        ) from exc
                log.warning("database unavailable (%s); retrying in %.1f s, fetching paused", exc, delay)
                if not paused:
                    self.source.pause()
                    paused = True
                self._wait(delay)
                delay = min(delay * 2, self.retry_max_s)
            except PermanentStorageError as exc:
                log.error("database rejected a batch (%s); isolating the offending records", exc)
                if not self._isolate_rejected(batch):
                    # Not a record's fault (a bug, or a schema that does not match): stop rather than loop;
                    # nothing was committed, so the batch is redelivered after the fix.
                    raise

        if paused:
            self.source.resume()

    def _wait(self, seconds: float) -> None:
        """Sleep while keeping the consumer's group membership alive (poll while paused returns nothing)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.source.poll(1, int(min(left, 1.0) * 1000))

    def _isolate_rejected(self, batch: Batch) -> int:
        """Store each record alone; those the database refuses become dead letters with the reason.
        Returns how many records were set aside."""
        keep = []
        for i, record in enumerate(batch.records):
            single = Batch(records=[record], annotations=batch.annotations[i : i + 1])
            try:
                self.store.write(single)
            except PermanentStorageError as exc:
                batch.dead_letters.append(DeadLetter(
                    record.topic, record.partition, record.offset, None, batch.raw.get(record.id),
                    f"rejected by the database: {exc}",
                ))
                continue
            keep.append(i)
        rejected = len(batch.records) - len(keep)
        batch.records = [batch.records[i] for i in keep]
        if batch.annotations:
            batch.annotations = [batch.annotations[i] for i in keep]
        return rejected

    def _add_progress(self, batch: Batch) -> None:
        """Upsert `consumer_progress` with the batch (offsets, high-water mark, newest event time).

        Alert rules read it for consumer lag and for "no traffic"; when idle it is refreshed every
        ``progress_every_s`` so a stuck consumer shows a growing lag.
        """
        for record in batch.records:
            key = (record.topic, record.partition)
            if key not in self._last_ts or record.ts > self._last_ts[key]:
                self._last_ts[key] = record.ts
        self._positions.update(batch.next_offsets)
        due = time.monotonic() - self._last_progress >= self.progress_every_s
        keys = set(self._positions) if due else set(batch.next_offsets)
        now = datetime.now(UTC)
        lag = 0
        for topic, partition in sorted(keys):
            committed = self._positions[(topic, partition)]
            highwater = self.source.highwater(topic, partition)
            batch.upserts[consumer_progress].append({
                "group_id": self.group_id, "topic": topic, "partition": partition,
                "committed": committed, "highwater": highwater,
                "last_record_ts": self._last_ts.get((topic, partition)), "updated_at": now,
            })
            lag += max(0, (highwater or committed) - committed)
        if due:
            self._last_progress = time.monotonic()
            self.counters.lag = lag

    def forget_partitions(self, revoked: set[tuple[str, int]]) -> None:
        """After a rebalance, stop reporting progress for partitions another consumer now owns."""
        for key in revoked:
            self._positions.pop(key, None)
            self._last_ts.pop(key, None)


__all__ = ["Counters", "Pipeline", "StoppedDuringOutage", "decode_messages"]
