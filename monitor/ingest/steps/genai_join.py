"""The GenAI join step: content events from the OTLP logs topic into the records of their spans.

Instrumentations that follow the older GenAI conventions send a call's text as log events
(``gen_ai.user.message``, ``gen_ai.choice``…, `monitor.ingest.formats.otlp_logs`) beside a span that has none
(`monitor.ingest.formats.otlp`: ``metadata.content = "not captured"``). The Collector exports logs and traces
separately, so either may arrive first, in any batch, on any daemon. This step runs first in the chain:

* every event is stored in `genai_events` (keyed by where it was read, so a replay stores nothing twice) and
  kept there for ``[retention] genai_events_max_age``: events of one call may come in several messages;
* a span record without content in this batch takes the text of its events — those in this batch and those
  stored before — before the detectors see it, so the text is checked, redacted and stored like any other;
* events whose span record was stored earlier (the span came first) make that record *late*: it is rebuilt
  from its row with the text of all its events, run through the detectors (``batch.late``), and its row and
  detections are replaced in this batch's transaction. Its per-minute counters and drift buckets keep what
  the span alone gave (they are counted once, when the span was stored); the text signals are in its row.

Crash safety is the batch's: the events, the joined records and the replaced rows are written in one
transaction with the offsets of the messages they came from, and every write is keyed, so a replay — of the
logs, of the spans, or both — ends in the same rows.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from monitor.ingest.batch import Batch, GenAIEvent
from monitor.ingest.formats.otlp import content
from monitor.ingest.record import Record
from monitor.ingest.steps import Step
from monitor.storage.db import as_utc
from monitor.storage.schema import genai_events, records

log = logging.getLogger(__name__)

JOINED = "gen_ai events (logs topic)"
"""``metadata.content`` of a record whose text came from log events."""
_WAITING = frozenset(("not captured", JOINED))
_CHUNK = 400  # ids per IN (...): under SQLite's default limit of 999 bound parameters
_DETAILS = "gen_ai.client.inference.operation.details"


def waiting(record: Record) -> bool:
    """Whether ``record`` is an OTLP span record whose text may still come as log events."""
    meta = record.metadata
    return meta.get("source") == "otlp" and meta.get("content") in _WAITING


def joined_text(events: Iterable[GenAIEvent]) -> tuple[str, str] | None:
    """(prompt, response) of one span's events in log order, or None when they carry no text (content capture
    off still emits the events, without their content) or cannot be read (logged; the events stay stored)."""
    try:
        return _joined_text(events)
    except Exception as exc:  # noqa: BLE001 - odd events of one span must not cost the batch anything
        log.warning("GenAI events of one span could not be read (%s); its record keeps no text",
                    type(exc).__name__)  # the type only: the exception's text may quote the content
        return None


def _joined_text(events: Iterable[GenAIEvent]) -> tuple[str, str] | None:
    ordered = sorted({(e.topic, e.partition, e.offset, e.part): e for e in events}.values(),
                     key=lambda e: (e.ts, e.topic, e.partition, e.offset, e.part))
    details = [e for e in ordered if e.name == _DETAILS]
    found = content(details[-1].body if details else {}, [(e.name, e.body) for e in ordered if e.name != _DETAILS])
    if found is None or not (found[0] or found[1]):
        return None
    return found[0], found[1]


def event_row(event: GenAIEvent, now: datetime) -> dict[str, Any]:
    return {"trace_id": event.trace_id, "span_id": event.span_id, "name": event.name, "body": event.body,
            "ts": event.ts, "topic": event.topic, "partition": event.partition, "offset": event.offset,
            "part": event.part, "received_at": now}


_RECORD_COLUMNS = ("id", "ts", "model", "app", "route", "user", "session", "status", "error", "finish_reason",
                   "latency_ms", "tokens_in", "tokens_out", "feedback_score", "feedback_comment", "cost_usd",
                   "metadata", "topic", "partition", "offset")


def _record_from_row(row: Any) -> Record:
    """A stored record as a `Record` again (its text columns aside), to be detected and stored with its text."""
    data = dict(zip(_RECORD_COLUMNS, row, strict=True))
    return Record(id=data["id"], ts=as_utc(data["ts"]), model=data["model"], prompt="", response="",
                  status=data["status"], latency_ms=data["latency_ms"], tokens_in=data["tokens_in"],
                  tokens_out=data["tokens_out"], error=data["error"], app=data["app"], route=data["route"],
                  user=data["user"], session=data["session"], finish_reason=data["finish_reason"],
                  feedback_score=data["feedback_score"], feedback_comment=data["feedback_comment"],
                  cost_usd=data["cost_usd"], metadata=dict(data["metadata"] or {}), topic=data["topic"],
                  partition=data["partition"], offset=data["offset"])


class GenAIJoinStep(Step):
    """`Step` that joins GenAI log events and span records by trace id + span id, whichever came first.
    Costs nothing on a batch without events and without span records lacking text.

    >>> from monitor.ingest.record import decode
    >>> span = decode(b'{"id":"%s-%s","ts":0,"model":"m","prompt":"","response":"",'
    ...               b'"metadata":{"source":"otlp","content":"not captured"}}' % (b"a" * 32, b"b" * 16))
    >>> asked = GenAIEvent("a" * 32, "b" * 16, "gen_ai.user.message", {"content": "hi"},
    ...                    datetime(2026, 1, 1, tzinfo=UTC), "otlp_logs", 0, 7, 1)
    >>> batch = Batch(records=[span], genai_events=[asked])
    >>> GenAIJoinStep(engine=None).process(batch)
    >>> batch.records[0].prompt, batch.records[0].metadata["content"], len(batch.rows[genai_events])
    ('hi', 'gen_ai events (logs topic)', 1)
    """

    def __init__(self, engine: Engine | None) -> None:
        self.engine = engine

    def process(self, batch: Batch) -> None:
        candidates: dict[str, list[Record]] = defaultdict(list)  # a redelivered span may be in a batch twice
        for record in batch.records:
            if waiting(record):
                candidates[record.id].append(record)
        if not batch.genai_events and not candidates:
            return
        now = datetime.now(UTC)
        batch.rows[genai_events].extend(event_row(e, now) for e in batch.genai_events)
        fresh: dict[str, list[GenAIEvent]] = defaultdict(list)
        for event in batch.genai_events:
            fresh[event.record_id].append(event)
        elsewhere = [key for key in fresh if key not in candidates]
        stored_events = self._stored_events([*elsewhere, *candidates])
        texts = {key: text for key in candidates
                 if (text := joined_text(fresh.get(key, []) + stored_events.get(key, []))) is not None}
        stored_records = self._stored_records([*elsewhere, *texts])
        late_ids: set[str] = set()
        for key, text in texts.items():
            same = candidates[key]
            for record in same:
                _fill(record, text)
            if key in stored_records:  # a replay of a span stored without its text: replace that row
                late_ids.add(key)
                batch.late.append(same[0])
        if late_ids:
            keep = [i for i, r in enumerate(batch.records) if r.id not in late_ids]
            batch.records = [batch.records[i] for i in keep]
            if batch.annotations:
                batch.annotations = [batch.annotations[i] for i in keep]
        for key in elsewhere:
            record = stored_records.get(key)
            if record is None or not waiting(record):
                continue  # the span has not come yet (its events wait in genai_events), or has its own text
            text = joined_text(fresh[key] + stored_events.get(key, []))
            if text is not None:
                _fill(record, text)
                batch.late.append(record)

    def _stored_records(self, ids: Sequence[str]) -> dict[str, Record]:
        if self.engine is None or not ids:
            return {}
        found: dict[str, Record] = {}
        columns = [records.c[name] for name in _RECORD_COLUMNS]
        with self.engine.connect() as conn:
            for start in range(0, len(ids), _CHUNK):
                chunk = list(ids[start:start + _CHUNK])
                for row in conn.execute(select(*columns).where(records.c.id.in_(chunk))):
                    found[row[0]] = _record_from_row(row)
        return found

    def _stored_events(self, ids: Sequence[str]) -> dict[str, list[GenAIEvent]]:
        """Events stored by earlier batches for the spans ``ids`` (``<trace>-<span>``)."""
        if self.engine is None or not ids:
            return {}
        spans = {tuple(key.split("-", 1)) for key in ids}
        traces = sorted({trace for trace, _ in spans})
        t = genai_events.c
        found: dict[str, list[GenAIEvent]] = defaultdict(list)
        with self.engine.connect() as conn:
            for start in range(0, len(traces), _CHUNK):
                stmt = select(t.trace_id, t.span_id, t.name, t.body, t.ts, t.topic, t.partition, t.offset, t.part) \
                    .where(t.trace_id.in_(traces[start:start + _CHUNK]))
                for row in conn.execute(stmt):
                    if (row.trace_id, row.span_id) in spans:
                        event = GenAIEvent(row.trace_id, row.span_id, row.name, dict(row.body or {}), as_utc(row.ts),
                                           row.topic, row.partition, row.offset, row.part)
                        found[event.record_id].append(event)
        return found

    def close(self) -> None:
        """Nothing to release: events wait in the database."""


def _fill(record: Record, text: tuple[str, str]) -> None:
    record.prompt, record.response = text
    record.metadata = {**record.metadata, "content": JOINED}


__all__ = ["JOINED", "GenAIJoinStep", "event_row", "joined_text", "waiting"]
