"""The batch writer: a batch stored twice, or carrying the same record twice, stores each row once."""

from __future__ import annotations

import orjson

from monitor.ingest.batch import RawMessage
from monitor.ingest.pipeline import decode_messages
from monitor.storage.db import make_engine
from monitor.storage.schema import records
from monitor.storage.store import Store, text_policy
from tests.helpers import count, good_record


def _batch(ids: list[int], first_offset: int = 0):  # type: ignore[no-untyped-def]
    return decode_messages([RawMessage("t", 0, first_offset + i, None, orjson.dumps(good_record(n)))
                            for i, n in enumerate(ids)])


def test_a_large_batch_written_twice_is_stored_once(migrated_db_url):
    """Large batches take the COPY path on Postgres; the second write meets stored rows and falls back."""
    store = Store(make_engine(migrated_db_url),
                  text_policy("full"))
    store.write(_batch(list(range(500))))
    store.write(_batch(list(range(500))))
    store.write(_batch(list(range(400, 900)), first_offset=400))  # half old, half new
    assert count(migrated_db_url, records) == 900
    store.engine.dispose()


def test_a_batch_carrying_the_same_record_twice_stores_it_once(migrated_db_url):
    store = Store(make_engine(migrated_db_url),
                  text_policy("none"))
    store.write(_batch([*range(300), 5, 6, 7]))
    assert count(migrated_db_url, records) == 300
    store.engine.dispose()


def test_every_value_reads_back_as_it_was_sent(migrated_db_url):
    """The COPY path (Postgres, binary) and the executemany path (SQLite) store each value exactly: text with
    non-ASCII characters, the largest token count, floats, booleans, timestamps and nested JSON."""
    from sqlalchemy import select

    from detectors.annotation import Annotation
    from detectors.base import Detection
    from monitor.storage.db import as_utc
    from monitor.storage.schema import detections

    raws = [orjson.dumps(good_record(
        i, prompt=f"Grüße {i} — naïve café ✓", response="x" * (i % 7), tokens_out=2**31 - 1, latency_ms=0.125 + i,
        feedback={"score": 0.5, "comment": "ok 👍"}, finish_reason="length", error=None if i % 2 else "quota",
        metadata={"nested": {"list": [1, 2.5, None, "s"], "flag": True}, "n": i})) for i in range(300)]
    batch = decode_messages([RawMessage("t", 0, i, None, raw) for i, raw in enumerate(raws)])
    batch.annotations = [Annotation([Detection("pii", 1.0, True, {"kinds": {"EMAIL": 1}, "findings": [
        {"kind": "EMAIL", "field": "prompt", "start": 0, "end": 3}]})], {"response_toxicity": 0.25, "refusal": False})
        for _ in batch.records]
    store = Store(make_engine(migrated_db_url), text_policy("full"))
    store.write(batch)
    with store.engine.connect() as conn:
        stored = {row.id: row for row in conn.execute(select(records))}
        details = {row.record_id: row.details for row in conn.execute(select(detections))}
    store.engine.dispose()

    assert len(stored) == len(details) == 300
    for record in batch.records:
        row = stored[record.id]
        assert (row.prompt, row.response, row.error, row.feedback_comment) == (
            record.prompt, record.response, record.error, record.feedback_comment)
        assert (row.tokens_out, row.latency_ms, row.feedback_score, row.finish_reason) == (2**31 - 1,
                                                                                          record.latency_ms, 0.5,
                                                                                          "length")
        assert (row.response_toxicity, row.refusal, row.metadata) == (0.25, False, record.metadata)
        assert as_utc(row.ts) == record.ts
        assert details[record.id] == {"kinds": {"EMAIL": 1},
                                      "findings": [{"kind": "EMAIL", "field": "prompt", "start": 0, "end": 3}]}
