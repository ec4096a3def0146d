"""What travels down the pipeline: one poll's worth of messages and everything derived from them.

A `Batch` is filled step by step (decode → detect → sample → …) and then written by the store in ONE
transaction, after which its offsets are committed. Steps add rows; they never write to the database
themselves, so a batch is either stored whole or not at all, and a replayed batch stores nothing twice
(every table written from a batch has a natural key and is inserted with ON CONFLICT DO NOTHING, except
`upserts`, which replace by key, and `increments`, which add to counters by key).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Table

from detectors.annotation import Annotation
from monitor.ingest.record import Record


class Message(Protocol):
    """A Kafka message as the source hands it over (kafka-python's ConsumerRecord satisfies it)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message that did not come from kafka-python (a file replay, a benchmark, a test): the same fields."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(slots=True)
class DeadLetter:
    """A message, or one part of a many-record message, that could not be stored as a record.

    ``part`` 0 is the whole message (``raw`` its bytes); ``part`` i + 1 is item i of a message that carries
    many records (an OTLP export batch's span i), so one bad item is its own dead letter beside its stored
    siblings. Stored under (topic, partition, offset, digest of key and raw, part): a replay maps to the
    same row."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    raw: bytes | None
    reason: str
    part: int = 0


@dataclass(frozen=True, slots=True)
class GenAIEvent:
    """One GenAI content event from the OTLP logs topic (``gen_ai.user.message``, ``gen_ai.choice``…), for the
    span ``trace_id``/``span_id`` (hex). ``body`` is the event's body (a message's ``content``, a choice's
    ``message``…) merged over its attributes. Its natural key is where it was read: (topic, partition, offset,
    part = its position in the message)."""

    trace_id: str
    span_id: str
    name: str
    body: dict[str, Any]
    ts: datetime
    topic: str
    partition: int
    offset: int
    part: int

    @property
    def record_id(self) -> str:
        """The id of the record its span becomes (`monitor.ingest.formats.otlp`)."""
        return f"{self.trace_id}-{self.span_id}"


Increments = dict[Table, list[dict[str, Any]]]


@dataclass(slots=True)
class Tally:
    """Counter increments a step derived from some records, and how to derive them from fewer.

    The store counts only the records it really inserted: when some of ``ids`` were not inserted by the
    batch's write (a replay, a second message reusing an id, a record a later step or the database refused),
    it adds ``recount(inserted)`` — the increments of only the records whose id is in ``inserted`` —
    instead of ``increments``. ``recount`` must count each id at most once, as ``increments`` does."""

    ids: AbstractSet[str]
    increments: Increments
    recount: Callable[[AbstractSet[str]], Increments]

    def rows(self, inserted: AbstractSet[str]) -> Increments:
        """The increments of the tallied records that were inserted (all of them, the common case)."""
        return self.increments if self.ids <= inserted else self.recount(inserted)


def settle(tallies: Iterable[Tally], inserted: AbstractSet[str], into: Increments | None = None) -> Increments:
    """Every tally's increments for the records in ``inserted``, per table, added to ``into`` (a fresh mapping
    when None)."""
    out: Increments = defaultdict(list) if into is None else into
    for tally in tallies:
        for table, rows in tally.rows(inserted).items():
            out.setdefault(table, []).extend(rows)
    return out


@dataclass(slots=True)
class Batch:
    records: list[Record] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    """Aligned with `records`; empty until the detect step ran."""
    dead_letters: list[DeadLetter] = field(default_factory=list)
    rows: dict[Table, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    """Extra rows steps want stored with the batch (drift events, samples…), inserted idempotently."""
    upserts: dict[Table, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    """Rows that replace an existing row with the same primary key (detector state checkpoints…)."""
    increments: dict[Table, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    """Counter rows added to the row with the same primary key (``col = col + excluded.col``; columns whose
    ``info["merge"]`` says ``min``, ``max`` or ``replace`` merge that way). Not idempotent by itself: the
    step that fills it must make sure a redelivered message is not counted again. Counters of records belong in
    `tallies` instead."""
    tallies: list[Tally] = field(default_factory=list)
    """Counters derived from records (per-minute counts, drift buckets): the store adds them only for the
    records it really inserted, so a record stored already — replayed, or another message under the same id —
    is never counted twice, and a record dead-lettered after it was tallied is not counted at all."""
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    """(topic, partition) -> offset of the next message to read: what is committed once stored."""
    first_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    """(topic, partition) -> offset of the batch's first message there: where offsets going backwards show."""
    received_at: datetime | None = None
    skipped: int = 0
    """Items of foreign-format messages that are not LLM calls (spans that are not GenAI), counted not stored."""
    raw: dict[str, bytes | None] = field(default_factory=dict)
    """Record id -> the message bytes it came from, kept so a record the database rejects can still be
    dead-lettered with its raw bytes."""
    genai_events: list[GenAIEvent] = field(default_factory=list)
    """Content events read from an OTLP logs topic, for the join step (`monitor.ingest.steps.genai_join`)."""
    late: list[Record] = field(default_factory=list)
    """Records stored by an earlier batch whose content arrived with this one (events joined after their span):
    detected like the others (``late_annotations``) and stored by replacing their row; not counted again."""
    late_annotations: list[Annotation] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records) + len(self.dead_letters)
