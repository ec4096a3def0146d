"""Labels out: CSV for analysts' spreadsheets, JSON Lines for fine-tuning sets.

One row per label, with the record's stored (redacted) text, its model/app/time, the reason of the sample
the reviewer opened and, when the record is also a uniform sample, its inclusion probability (weight 1/p for
unbiased estimates). CSV cells that a spreadsheet would run as a formula (starting with ``= + - @``) get a
leading apostrophe; JSON Lines keeps text exactly.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import orjson
from sqlalchemy import Engine, and_, select

from detectors.redact import seal
from monitor.storage.crypto import Cipher, open_texts
from monitor.storage.schema import labels, records, reviewers, samples

Format = Literal["csv", "jsonl"]
COLUMNS = (
    "label_id", "record_id", "sample_id", "reviewer", "verdict", "tags", "note", "labelled_at",
    "model", "app", "ts", "reason", "uniform_inclusion_probability", "prompt", "response",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def label_rows(engine: Engine, reviewer_id: int | None = None,
               cipher: Cipher | None = None) -> Iterator[dict[str, Any]]:
    """Labels as flat dicts in label order; only ``reviewer_id``'s when given. Encrypted texts are opened with
    ``cipher`` (without it, or the right key, the record's clear columns: redacted text), then sealed."""
    uniform = samples.alias("uniform")
    query = (
        select(labels.c.id, labels.c.record_id, labels.c.sample_id, reviewers.c.name, labels.c.verdict,
               labels.c.tags, labels.c.note, labels.c.labelled_at, samples.c.model, samples.c.app,
               samples.c.ts, samples.c.reason, uniform.c.inclusion_probability, records.c.prompt,
               records.c.response, records.c.text_encrypted, records.c.text_key)
        .join(reviewers, reviewers.c.id == labels.c.reviewer_id)
        .join(samples, samples.c.id == labels.c.sample_id)
        .outerjoin(uniform, and_(uniform.c.record_id == labels.c.record_id, uniform.c.reason == "uniform"))
        .outerjoin(records, records.c.id == labels.c.record_id)
        .order_by(labels.c.id)
    )
    if reviewer_id is not None:
        query = query.where(labels.c.reviewer_id == reviewer_id)
    with engine.connect() as conn:
        for row in conn.execute(query):
            *values, token, key = row
            out = dict(zip(COLUMNS, values, strict=True))
            opened = open_texts(cipher, token, key)
            if opened is not None:
                out["prompt"], out["response"] = opened.get("prompt"), opened.get("response")
            out["tags"] = list(out["tags"] or [])
            for key in ("note", "prompt", "response"):  # the page's masking rule holds in files too
                if isinstance(out[key], str):
                    out[key] = seal(out[key])
            for key in ("labelled_at", "ts"):
                value = out[key]
                out[key] = (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
            yield out


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list):
        value = ";".join(value)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_labels(engine: Engine, fmt: Format, out: TextIO, reviewer_id: int | None = None,
                 cipher: Cipher | None = None) -> int:
    """Write labels to ``out`` as ``csv`` or ``jsonl``; returns how many."""
    count = 0
    if fmt == "csv":
        writer = csv.writer(out)
        rows = label_rows(engine, reviewer_id, cipher)
        first = next(rows, None)  # the query runs before the header: a failing one leaves nothing half-written
        writer.writerow(COLUMNS)
        for row in ([first] if first is not None else []):
            writer.writerow([_csv_cell(row[c]) for c in COLUMNS])
            count += 1
        for row in rows:
            writer.writerow([_csv_cell(row[c]) for c in COLUMNS])
            count += 1
    elif fmt == "jsonl":
        for row in label_rows(engine, reviewer_id, cipher):
            out.write(orjson.dumps(row).decode() + "\n")
            count += 1
    else:
        raise ValueError(f"unknown export format {fmt!r}; use csv or jsonl")
    return count


def export_filename(fmt: Format, now: datetime | None = None) -> str:
    return f"labels-{(now or datetime.now(UTC)):%Y%m%dT%H%M%SZ}.{fmt}"
