"""Rows as the pipeline stores them, for tests of the jobs that read `records` (reports, rollups, retention)."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert

from monitor.storage.schema import records

_offsets = itertools.count()


def record_row(id: str, ts: datetime, model: str = "m1", **columns: Any) -> dict[str, Any]:
    """A `records` row with the required columns filled in; ``columns`` override or add any other."""
    row: dict[str, Any] = {
        "id": id,
        "ts": ts,
        "ingested_at": ts,
        "model": model,
        "app": "chat",
        "status": "ok",
        "prompt_chars": 40,
        "response_chars": 120,
        "topic": "llm-logs",
        "partition": 0,
        "offset": next(_offsets),
    }
    row.update(columns)
    return row


def insert_records(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` in one transaction; a column missing from some rows is NULL in those."""
    keys = {key for row in rows for key in row}
    with engine.begin() as conn:
        conn.execute(insert(records), [{key: row.get(key) for key in keys} for row in rows])
