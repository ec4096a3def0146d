"""Runs the data path described in `monitor.ingest.chain`, one batch at a time, and nothing else.

The steps between decode and persist are chosen in `monitor.ingest.chain.build_steps`; each is a
`monitor.ingest.steps.Step`.

One iteration takes one poll's worth of messages through the steps and stores the result in one
transaction; only then are the offsets committed. Guarantees a caller may rely on:

* at-least-once: an offset is committed only after every row derived from the messages before it is
  durable; a crash anywhere replays from the last commit, and the store ignores rows it already has;
* nothing is dropped: a message that fails validation, or that the database itself rejects, becomes a
  `dead_letters` row with its raw bytes and the reason;
* one record never stops the others: any exception raised because of one message — in decode, in any step,
  in storage — dead-letters that message with the reason and the rest of its batch goes on. The happy path
  pays nothing for this: a step runs over the whole batch, and only when it raises are the culprits found
  by bisection (about 2·log2(n) runs of the step for one culprit among n records). A batch fails as a
  whole only for an error that is not about its records (the database unreachable), and then it waits and
  retries;
* backpressure: while the database is unreachable the pipeline pauses fetching, keeps its group
  membership, and retries with exponential backoff (capped at ``retry_max_s``) until the write succeeds
  or it is told to stop; one WARNING when the outage starts, one INFO with its length when it ends;
* offsets that go backwards (a broker restarted empty, a topic recreated) are noticed and logged with the
  partition and the jump; storage and counters are keyed by content, so the new messages at reused
  offsets are stored and counted, not mistaken for old ones.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import exc as sa_exc

from monitor.ingest.batch import Batch, DeadLetter, Message, settle
from monitor.ingest.formats import Decoder, decode_foreign
from monitor.ingest.record import RecordError, decode
from monitor.ingest.steps import Step
from monitor.ops import metrics
from monitor.storage.schema import consumer_progress
from monitor.storage.store import PermanentStorageError, Store, TransientStorageError

log = logging.getLogger(__name__)

_DATABASE_DOWN = (TransientStorageError, sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError,
                  sa_exc.TimeoutError)
"""Errors that say the database is not answering, not that a record is wrong: the batch waits and retries."""


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


class Source(Protocol):
    def poll(self, max_records: int, timeout_ms: int) -> list[Message]: ...
    def mark_durable(self, next_offsets: dict[tuple[str, int], int]) -> None: ...
    def commit(self, only: set[tuple[str, int]] | None = None) -> bool: ...
    def highwater(self, topic: str, partition: int) -> int | None: ...
    def positions(self, skip: Iterable[tuple[str, int]] = ()) -> dict[tuple[str, int], int]: ...
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


def failure_reason(where: str, exc: BaseException) -> str:
    """A dead letter's reason for an unexpected exception: where and what, never the exception's text (it
    may quote the message's content, and reasons must not carry secrets)."""
    return f"{where} failed on this message: {type(exc).__name__}"


def decode_messages(messages: Sequence[Message], fields: Mapping[str, str] | None = None,
                    decoders: Mapping[str, Decoder] | None = None) -> Batch:
    """The decode step: valid records into ``batch.records``, the rest into ``batch.dead_letters``.
    Never raises because of a message: whatever decoding one raises makes it a dead letter.

    A topic in ``decoders`` is read by its format's decoder (`monitor.ingest.formats`: one message, any
    number of records); every other topic is our JSON record, one per message."""
    batch = Batch(received_at=datetime.now(UTC))
    for message in messages:
        decoder = decoders.get(message.topic) if decoders else None
        try:
            if decoder is not None:
                decode_foreign(decoder, message, batch)
            else:
                record = decode(message.value, fields)
                record.topic, record.partition, record.offset = message.topic, message.partition, message.offset
                batch.records.append(record)
                batch.raw[record.id] = message.value
        except Exception as exc:  # noqa: BLE001 - one message must not stop the others
            reason = str(exc) if isinstance(exc, RecordError) else failure_reason("decode", exc)
            if not isinstance(exc, RecordError):
                log.warning("decode raised %s on %s[%d]@%d; dead-lettered", type(exc).__name__, message.topic,
                            message.partition, message.offset)
            batch.dead_letters.append(DeadLetter(
                message.topic, message.partition, message.offset, message.key, message.value, reason
            ))
        key = (message.topic, message.partition)
        if message.offset + 1 > batch.next_offsets.get(key, -1):
            batch.next_offsets[key] = message.offset + 1
        if message.offset < batch.first_offsets.get(key, message.offset + 1):
            batch.first_offsets[key] = message.offset
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
        retry_max_s: float = 5.0,
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
        self._stored_positions: dict[tuple[str, int], int] | None = None
        self._rewound: set[tuple[str, int]] = set()
        self._outage_since: float | None = None
        self._outage_retries = 0
        self._stop_seen_at: float | None = None

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
        started = time.perf_counter()
        delay = self.retry_initial_s
        while True:
            batch = decode_messages(messages, self.fields, self.decoders)
            try:
                self._check_offsets(batch)
                for step in self.steps:
                    self._run_step(step, batch)
                break
            except _DATABASE_DOWN as exc:  # a step reads the database (stored ids, checkpoints): wait for it
                self._database_down(exc, stop, len(messages))
                self._wait(delay)
                delay = min(delay * 2, self.retry_max_s)
        stored = time.perf_counter()
        self._persist(batch, stop)
        committing = time.perf_counter()
        self.source.mark_durable(batch.next_offsets)
        self.source.commit()
        done = time.perf_counter()
        _observe(batch, batch_s=done - started, store_s=committing - stored, commit_s=done - committing)
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

    # -- steps, with poison isolation ---------------------------------------------------------------------

    def _run_step(self, step: Step, batch: Batch) -> None:
        """``step`` over the whole batch; if it raises, the culprits are found by bisection: the records are
        split in halves, each half run alone, and a half that raises again is split again, down to single
        records, which become dead letters with the reason. The records of every half that went through go
        on, in order, with what the step made of them. One culprit among n records costs about 2·log2(n)
        runs of the step (19 for 512), not n.

        What the step had added before raising is discarded first. A step with online state (topic drift)
        may have seen some records more than once; counters are unaffected (they are tallies, counted by the
        store for the records stored). The step then sees the batch's offsets once, in a batch without
        records."""
        sizes = _sizes(batch)
        try:
            step.process(batch)
            return
        except _DATABASE_DOWN:
            raise  # not about a record: the caller waits for the database and runs the chain again
        except Exception as exc:  # noqa: BLE001 - isolated below; a bug that fails every record shows as letters
            first_error = exc
        _truncate(batch, sizes)
        name = type(step).__name__
        parts: list[Batch] = []
        culprits: list[tuple[int, BaseException]] = []
        if len(batch.records) == 1:
            culprits.append((0, first_error))
            runs = 1
        else:
            runs = 1 + self._bisect(step, batch, 0, len(batch.records), parts, culprits)
        for i, exc in culprits:
            record = batch.records[i]
            batch.dead_letters.append(DeadLetter(record.topic, record.partition, record.offset, None,
                                                 batch.raw.get(record.id), failure_reason(name, exc), record.part))
        records: list[Any] = []
        annotations: list[Any] = []
        for part in parts:
            records.extend(part.records)
            annotations.extend(part.annotations)
            _absorb(batch, part)
        batch.records = records
        batch.annotations = annotations if len(annotations) == len(records) else []
        rest = Batch(next_offsets=dict(batch.next_offsets), first_offsets=dict(batch.first_offsets),
                     received_at=batch.received_at)
        try:
            step.process(rest)
        except _DATABASE_DOWN:
            raise
        except Exception:  # no record to blame: logged, the batch goes on
            log.exception("step %s failed on a batch without records", name)
        _absorb(batch, rest)
        log.warning("step %s raised %s on a batch; %d record(s) dead-lettered, %d went on (%d runs to find them)",
                    name, type(first_error).__name__, len(culprits), len(records), runs)

    def _bisect(self, step: Step, batch: Batch, start: int, stop: int, parts: list[Batch],
                culprits: list[tuple[int, BaseException]]) -> int:
        """Run ``step`` on each half of ``batch.records[start:stop]`` (known to raise together); halves that
        go through are appended to ``parts`` in order, single records that raise to ``culprits``. Returns the
        runs it took."""
        runs = 0
        middle = (start + stop) // 2
        for lo, hi in ((start, middle), (middle, stop)):
            part = Batch(records=batch.records[lo:hi], annotations=batch.annotations[lo:hi],
                         received_at=batch.received_at,
                         raw={r.id: batch.raw.get(r.id) for r in batch.records[lo:hi]})
            runs += 1
            try:
                step.process(part)
            except _DATABASE_DOWN:
                raise
            except Exception as exc:  # noqa: BLE001 - a culprit is in this half
                if hi - lo == 1:
                    culprits.append((lo, exc))
                else:
                    runs += self._bisect(step, batch, lo, hi, parts, culprits)
                continue
            parts.append(part)
        return runs

    # -- offsets that go backwards ------------------------------------------------------------------------

    def _check_offsets(self, batch: Batch) -> None:
        """One log line when a partition's offsets go backwards: below what this process read last (the
        broker restarted empty, the topic was recreated), or, for a partition new to this process, below the
        position stored with the last batch while the record found there is not the one stored (a reset;
        when it is the same record this is an ordinary replay after a crash or rebalance)."""
        for key, first in batch.first_offsets.items():
            topic, partition = key
            if key in self._rewound:  # the source moved it back and said so
                self._rewound.discard(key)
                continue
            seen = self._positions.get(key)
            if seen is not None:
                if first < seen:
                    log.warning("offsets went backwards on %s[%d]: read up to %d, now at %d (broker restarted, "
                                "topic recreated or retention); new messages are stored, none mistaken for old",
                                topic, partition, seen, first)
                continue
            if self._stored_positions is None:
                try:
                    self._stored_positions = self.store.read_positions(self.group_id)
                except TransientStorageError:
                    return  # checked with the next batch
            stored = self._stored_positions.get(key)
            if stored is None or first >= stored:
                continue
            at_first = [r for r in batch.records if (r.topic, r.partition, r.offset) == (topic, partition, first)]
            try:
                same = bool(at_first) and self.store.stored_at(at_first[0].id) == (topic, partition, first)
            except TransientStorageError:
                same = False
            if same:
                log.info("%s[%d] resumes at %d, below the stored position %d: replaying what was stored",
                         topic, partition, first, stored)
            else:
                highwater = self.source.highwater(topic, partition)
                log.warning("offsets went backwards on %s[%d]: stored position %d, now at %d (log end %s): "
                            "broker restarted, topic recreated or retention; new messages are stored, none "
                            "mistaken for old", topic, partition, stored, first, highwater)

    # -- persist, with backpressure and poison isolation -------------------------------------------------

    def _persist(self, batch: Batch, stop: threading.Event | None) -> None:
        self._add_progress(batch)
        delay = self.retry_initial_s
        while True:
            try:
                self.store.write(batch)
                break
            except TransientStorageError as exc:
                self._database_down(exc, stop, len(batch))
                self._wait(delay)
                delay = min(delay * 2, self.retry_max_s)
            except PermanentStorageError as exc:
                log.warning("database rejected a batch (%s); isolating the offending records", exc)
                self._isolate_rejected(batch)
                break

        if self._outage_since is not None:
            log.info("database back after %.1f s (%d retries); fetching resumed",
                     time.monotonic() - self._outage_since, self._outage_retries)
            self._outage_since = self._stop_seen_at = None
            self._outage_retries = 0
            self.source.resume()

    def _database_down(self, exc: BaseException, stop: threading.Event | None, held: int) -> None:
        """Count a failed attempt (also in ``watchkeeper_database_errors_total``); the first of an outage
        logs one WARNING and pauses fetching. Past the stop
        grace period after a stop request, give up with `StoppedDuringOutage` (nothing committed)."""
        self.counters.storage_retries += 1
        metrics.DATABASE_ERRORS.labels("pipeline").inc()
        self._outage_retries += 1
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning("database unavailable (%s); fetching paused, retrying every %.1f-%.1f s until it answers",
                        _short(exc), self.retry_initial_s, self.retry_max_s)
            self.source.pause()
        else:
            log.debug("database still unavailable: %s", _short(exc))
        if stop is not None and stop.is_set():
            self._stop_seen_at = self._stop_seen_at or time.monotonic()
            if time.monotonic() - self._stop_seen_at > self.stop_grace_s:
                raise StoppedDuringOutage(
                    f"database unreachable at shutdown ({_short(exc)}); {held} messages not stored, "
                    "they will be redelivered"
                ) from exc

    def _wait(self, seconds: float) -> None:
        """Sleep while keeping the consumer's group membership alive (poll while paused returns nothing)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.source.poll(1, int(min(left, 1.0) * 1000))

    def _isolate_rejected(self, batch: Batch) -> int:
        """Store each record alone (with its detections); those the database refuses become dead letters with
        the reason. Then the rest of the batch — dead letters, step rows, checkpoints, counters of the records
        stored (refused ones and ids stored before are not counted) and progress — in one transaction, so the
        counters still travel with the consumer position; if the database refuses that too, each part alone,
        and a part it refuses is logged and left out (not a record's fault, so nothing to dead-letter; the
        partition must not stall on it). Transient errors propagate (the caller retries the whole batch; what
        was stored is ignored on the retry). Returns the records set aside."""
        keep = []
        inserted: set[str] = set()
        for i, record in enumerate(batch.records):
            single = Batch(records=[record], annotations=batch.annotations[i : i + 1])
            try:
                inserted |= self.store.write(single)
            except PermanentStorageError as exc:
                batch.dead_letters.append(DeadLetter(
                    record.topic, record.partition, record.offset, None, batch.raw.get(record.id),
                    f"rejected by the database: {exc}", record.part,
                ))
                continue
            keep.append(i)
        rejected = len(batch.records) - len(keep)
        batch.records = [batch.records[i] for i in keep]
        if batch.annotations:
            batch.annotations = [batch.annotations[i] for i in keep]
        increments = settle(batch.tallies, inserted, into={t: list(r) for t, r in batch.increments.items()})
        batch.tallies = []
        batch.increments = increments
        rest = Batch(dead_letters=batch.dead_letters, rows=batch.rows, upserts=batch.upserts, increments=increments)
        try:
            self.store.write(rest)
            return rejected
        except PermanentStorageError as exc:
            log.warning("database rejected the rest of a batch (%s); storing its parts one by one", exc)
        parts: list[Batch] = [Batch(dead_letters=[d]) for d in batch.dead_letters]
        for attr in ("rows", "upserts", "increments"):
            for table, rows in getattr(batch, attr).items():
                for row in rows:
                    part = Batch()
                    getattr(part, attr)[table].append(row)
                    parts.append(part)
        for part in parts:
            try:
                self.store.write(part)
            except PermanentStorageError as exc:
                log.error("database rejected a derived row, left out: %s", exc)
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
        # Assigned partitions not read from yet are reported too (no event time yet), so whoever reads
        # `consumer_progress` — the drift fold's watermark — knows they are behind, not absent.
        unread = self.source.positions(skip=self._positions)
        for key, position in unread.items():
            self._positions.setdefault(key, position)
            keys.add(key)
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

    def expect_rewind(self, key: tuple[str, int], was: int, now: int) -> None:
        """The source moved ``key`` back from ``was`` to ``now`` and logged it: the offsets going backwards
        in its next batch are expected, not warned about a second time."""
        self._rewound.add(key)

    def forget_partitions(self, revoked: set[tuple[str, int]]) -> None:
        """After a rebalance, stop reporting progress for partitions another consumer now owns."""
        for key in revoked:
            self._positions.pop(key, None)
            self._last_ts.pop(key, None)
        self._stored_positions = None  # read again when the partitions come back


__all__ = ["Counters", "Pipeline", "StoppedDuringOutage", "decode_messages"]


def _observe(batch: Batch, *, batch_s: float, store_s: float, commit_s: float) -> None:
    """A stored and committed batch in the Prometheus metrics (`monitor.ops.metrics`): outcomes, findings
    by detector, latencies. A few dictionary updates per batch, none per record but the findings count."""
    metrics.RECORDS.labels("stored").inc(len(batch.records))
    if batch.dead_letters:
        metrics.RECORDS.labels("dead_lettered").inc(len(batch.dead_letters))
    if batch.skipped:
        metrics.RECORDS.labels("skipped").inc(batch.skipped)
    flagged: dict[str, int] = {}
    for annotation in batch.annotations:
        for detection in annotation.detections:
            if detection.flagged:
                flagged[detection.detector] = flagged.get(detection.detector, 0) + 1
    for detector, n in flagged.items():
        metrics.FINDINGS.labels(detector).inc(n)
    metrics.BATCHES.inc()
    metrics.BATCH_SECONDS.observe(batch_s)
    metrics.STORE_SECONDS.observe(store_s)
    metrics.COMMIT_SECONDS.observe(commit_s)


_Sizes = tuple[int, int, dict[Any, int], dict[Any, int], dict[Any, int]]


def _sizes(batch: Batch) -> _Sizes:
    """How much a batch holds, so that what a failed step added can be taken back (`_truncate`)."""
    return (len(batch.dead_letters), len(batch.tallies), {t: len(r) for t, r in batch.rows.items()},
            {t: len(r) for t, r in batch.upserts.items()}, {t: len(r) for t, r in batch.increments.items()})


def _truncate(batch: Batch, sizes: _Sizes) -> None:
    letters, tallies, rows, upserts, increments = sizes
    del batch.dead_letters[letters:]
    del batch.tallies[tallies:]
    for held, before in ((batch.rows, rows), (batch.upserts, upserts), (batch.increments, increments)):
        for table, table_rows in held.items():
            del table_rows[before.get(table, 0):]


def _absorb(batch: Batch, part: Batch) -> None:
    """Add what a step made of ``part`` (a piece of ``batch`` run alone) to ``batch``; records excepted."""
    batch.dead_letters.extend(part.dead_letters)
    batch.tallies.extend(part.tallies)
    batch.skipped += part.skipped
    for mine, theirs in ((batch.rows, part.rows), (batch.upserts, part.upserts),
                         (batch.increments, part.increments)):
        for table, rows in theirs.items():
            mine[table].extend(rows)
