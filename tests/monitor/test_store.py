"""The batch writer: a batch stored twice, or carrying the same record twice, stores each row once."""

from __future__ import annotations

import orjson

from monitor.batch import RawMessage
from monitor.pipeline import decode_messages
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
