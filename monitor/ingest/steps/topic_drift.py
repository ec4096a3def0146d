"""Topic drift: the topic mix of embedded prompt samples, still watched per Kafka partition.

The scalar signals (lengths, latency, tokens, feedback, error/refusal/toxic rates) are watched per stream
by `monitor.ingest.steps.drift` and `monitor.jobs.drift`; topic drift has not moved to that model yet (its
clusters are learnt per detector, so buckets from several daemons would not share cluster ids). Until it
does, it keeps the old shape: one `DriftBank` of topic detectors per partition, each seeing a uniform
subsample of every (model, app) stream, a change reported once per partition.

The state of partition *p* is the row ``drift-topic/<topic>/<p>`` of `detector_state`, written with a batch
every ``checkpoint_every_s`` (atomically with that batch's rows and before its offsets are committed), and
directly when the partition is revoked or the daemon stops. The state records the next offset it reflects,
so a batch that is redelivered after a crash is not counted twice.

Wiring: ``TopicDriftStep.from_config(config.drift, engine)`` in the chain when ``topic_sample_rate > 0``.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Engine, delete, insert, select

from detectors.config import TOXIC_AT
from detectors.drift.bank import Columns, DriftBank, DriftEvent, stream_name
from detectors.drift.embedding import PromptEmbedder, sampled
from detectors.drift.signals import Signal
from monitor.config import DriftConfig
from monitor.ingest.batch import Batch
from monitor.ingest.record import Record
from monitor.ingest.steps import Step
from monitor.storage.schema import detector_state, drift_events

log = logging.getLogger(__name__)

STATE_FORMAT = 1
TOPIC = (Signal("prompt_topic", "topic"),)
Partition = tuple[str, int]


def state_key(topic: str, partition: int) -> str:
    """The `detector_state` key of one partition's topic-drift bank."""
    return f"drift-topic/{topic}/{partition}"


def _clean(value: Any) -> Any:
    """JSON for the database: NaN and infinities become null (Postgres JSONB rejects them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def event_row(event: DriftEvent, partition: Partition, now: datetime) -> dict[str, Any]:
    """A `drift_events` row."""
    return {
        "stream": event.stream, "signal": event.signal, "detector": event.detector,
        "detected_at": event.detected_at, "created_at": now, "record_id": event.record_id,
        "before": _clean(event.before), "after": _clean(event.after),
        "details": _clean({**event.details, "direction": event.direction, "topic": partition[0],
                           "partition": partition[1]}),
    }


@dataclass
class _Held:
    bank: DriftBank
    next_offset: int = 0
    dirty: bool = False


class TopicDriftStep(Step):
    """Pipeline step: per-partition topic-drift banks, their events into ``drift_events``, state checkpointed.

    ``make_bank`` builds a fresh bank for a partition never seen before; ``engine`` (optional) is used only
    outside ``process``: to load state on assignment and to save it on revocation and close. ``embedder``
    embeds the sampled prompts for topic drift (None: no topic drift).
    """

    def __init__(self, make_bank: Callable[[], DriftBank], *, engine: Engine | None = None,
                 embedder: PromptEmbedder | None = None, topic_sample_rate: float = 0.25,
                 checkpoint_every_s: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 toxic_at: float = TOXIC_AT) -> None:
        self.make_bank = make_bank
        self.toxic_at = toxic_at
        self.engine = engine
        self.embedder = embedder
        self.topic_sample_rate = topic_sample_rate if embedder is not None else 0.0
        self.checkpoint_every_s = checkpoint_every_s
        self.clock = clock
        self.held: dict[Partition, _Held] = {}
        self._names: dict[tuple[str, str | None], str] = {}
        self._last_checkpoint = clock()

    @classmethod
    def from_config(cls, config: DriftConfig, engine: Engine | None = None,
                    toxic_at: float = TOXIC_AT) -> TopicDriftStep:
        def make_bank() -> DriftBank:
            return DriftBank(arl0=config.arl0, warmup=config.warmup, k=config.k, odds_ratio=config.odds_ratio,
                             margin=config.margin, topics=config.topics, topic_warmup=config.topic_warmup,
                             topic_sample_rate=config.topic_sample_rate, max_streams=200, signals=TOPIC)

        embedder = PromptEmbedder() if config.topic_sample_rate > 0 else None
        return cls(make_bank, engine=engine, embedder=embedder, topic_sample_rate=config.topic_sample_rate,
                   checkpoint_every_s=config.checkpoint_every_s, toxic_at=toxic_at)

    # -- the Step contract -------------------------------------------------------------------------------

    def process(self, batch: Batch) -> None:
        """Feed the batch to its partitions' banks. The signal columns and the sampled prompts' embeddings
        are built once for the whole batch (no per-record objects) and sliced per partition."""
        records = batch.records
        if not records:
            return
        by_partition: dict[Partition, list[int]] = {}
        for i, record in enumerate(records):
            key = (record.topic, record.partition)
            rows = by_partition.get(key)
            if rows is None:
                rows = by_partition[key] = []
            held = self.held.get(key)
            if held is not None and record.offset < held.next_offset:
                continue  # already reflected in the restored state
            rows.append(i)
        columns: dict[str, np.ndarray] = {}  # scalar signals are watched per stream (steps.drift)
        streams = self._stream_names(records)
        chosen = np.zeros(len(records), dtype=bool)
        embeddings = np.zeros((0, 0), dtype=np.float32)
        if self.embedder is not None:
            rate = self.topic_sample_rate
            for rows in by_partition.values():
                for i in rows:
                    chosen[i] = sampled(records[i].id, rate)
            picked = np.flatnonzero(chosen)
            embeddings = self.embedder.embed([records[i].prompt for i in picked])
        embedding_row = np.cumsum(chosen) - 1  # record -> its row in `embeddings`
        now = datetime.now(UTC)
        for key, rows in by_partition.items():
            if not rows:
                continue
            held = self.held.get(key)
            if held is None:
                held = self.held[key] = _Held(self.make_bank())
            index = np.asarray(rows)
            if len(rows) == len(records):
                part = Columns([r.id for r in records], [r.ts for r in records], streams, columns)
            else:
                part = Columns([records[i].id for i in rows], [records[i].ts for i in rows],
                               [streams[i] for i in rows], {name: v[index] for name, v in columns.items()})
            embedded = np.flatnonzero(chosen[index])
            if embedded.size:
                part.embeddings, part.embedded = embeddings[embedding_row[index[embedded]]], embedded
            for event in held.bank.update_columns(part):
                batch.rows[drift_events].append(event_row(event, key, now))
            held.next_offset = max(held.next_offset, max(records[i].offset for i in rows) + 1)
            held.dirty = True
        if self.clock() - self._last_checkpoint >= self.checkpoint_every_s:
            batch.upserts[detector_state].extend(self.checkpoint_rows(now))
            self._last_checkpoint = self.clock()

    def close(self) -> None:
        self.save(set(self.held))

    # -- rebalance and restart ---------------------------------------------------------------------------

    def on_assigned(self, partitions: set[Partition]) -> None:
        """Resume newly assigned partitions from their stored state."""
        new = [p for p in partitions if p not in self.held]
        if not new or self.engine is None:
            return
        keys = {state_key(*p): p for p in new}
        with self.engine.connect() as conn:
            rows = conn.execute(select(detector_state.c.key, detector_state.c.state)
                                .where(detector_state.c.key.in_(list(keys)))).all()
        for key, state in rows:
            self.restore(keys[key], bytes(state))

    def on_revoked(self, partitions: set[Partition]) -> None:
        """Hand revoked partitions over: store their state, then forget them."""
        self.save({p for p in partitions if p in self.held})
        for p in partitions:
            self.held.pop(p, None)

    def restore(self, partition: Partition, state: bytes) -> None:
        """Continue ``partition`` from checkpointed ``state`` (a `detector_state.state` value)."""
        data = orjson.loads(zlib.decompress(state))
        if data.get("format") != STATE_FORMAT:
            log.warning("ignoring drift state of %s in unknown format %r", partition, data.get("format"))
            return
        bank = self.make_bank()
        bank.restore(data["bank"])
        self.held[partition] = _Held(bank, int(data["next_offset"]))

    def checkpoint_rows(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """`detector_state` rows for every partition whose state changed since its last checkpoint."""
        now = now or datetime.now(UTC)
        rows = []
        for (topic, partition), held in self.held.items():
            if held.dirty:
                rows.append({"key": state_key(topic, partition), "state": self._encode(held), "updated_at": now})
                held.dirty = False
        return rows

    def save(self, partitions: Iterable[Partition]) -> None:
        """Write the state of ``partitions`` now (outside a batch: revocation and shutdown)."""
        if self.engine is None:
            return
        now = datetime.now(UTC)
        rows = [{"key": state_key(*p), "state": self._encode(self.held[p]), "updated_at": now}
                for p in partitions if p in self.held]
        if not rows:
            return
        with self.engine.begin() as conn:
            conn.execute(delete(detector_state).where(detector_state.c.key.in_([r["key"] for r in rows])))
            conn.execute(insert(detector_state), rows)

    # -- internals ---------------------------------------------------------------------------------------

    def _stream_names(self, records: Sequence[Record]) -> list[str]:
        names = self._names
        if len(names) > 10_000:  # a flood of distinct (model, app) pairs: the bank caps them, so do we
            names.clear()
        out = []
        for record in records:
            key = (record.model, record.app)
            name = names.get(key)
            if name is None:
                name = names[key] = stream_name(record.model, record.app)
            out.append(name)
        return out

    @staticmethod
    def _encode(held: _Held) -> bytes:
        data = {"format": STATE_FORMAT, "next_offset": held.next_offset, "bank": held.bank.state()}
        return zlib.compress(orjson.dumps(data), 6)
