"""The batch writer: everything a batch produced goes to the database in ONE transaction.

Idempotent by construction: every insert is ``ON CONFLICT DO NOTHING`` on the row's natural key
(``records.id``, ``(record_id, detector)``, dead letters' ``(topic, partition, offset, digest)``…), so a batch
replayed after a crash stores nothing twice. Large inserts on Postgres use binary ``COPY`` straight into the
table under a savepoint; only when that meets a row already stored (a replay) do they go through a
transaction-local staging table and ``INSERT … SELECT … ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
from psycopg.types.json import set_json_dumps
from sqlalchemy import Connection, Engine, Table, exc, func, select
from sqlalchemy.dialects import postgresql, sqlite

from detectors.annotation import Annotation
from detectors.base import Detection
from detectors.redact import seal
from monitor.storage.crypto import Cipher, seal_texts
from monitor.storage.db import insert_ignore
from monitor.storage.schema import consumer_progress, dead_letters, detections, records

if TYPE_CHECKING:  # the store writes what the ingest chain built; it needs only the shapes
    from monitor.ingest.batch import Batch
    from monitor.ingest.record import Record

_COPY_MIN_ROWS = 200

TextPolicy = Callable[["Record", "Annotation | None"], tuple[Any, ...]]
"""(prompt, response, error, feedback_comment, metadata) as `records` stores them, then optionally
(text_encrypted, text_key)."""


class TransientStorageError(Exception):
    """The database is unreachable or failed in a way worth retrying (connection lost, server restart)."""


class PermanentStorageError(Exception):
    """The database rejected the data itself (a constraint or a value it cannot hold)."""


def text_policy(store_text: str, cipher: Cipher | None = None) -> TextPolicy:
    """What text `records` keeps, as ``(prompt, response, error, feedback_comment, metadata)`` for `record_row`:
    ``full`` the raw values; ``redacted`` the detect step's redacted values; ``none`` no prompt or response,
    but the error, feedback comment and metadata *redacted* (they are kept, not dropped, and never raw).
    Never the raw value when redaction is asked for but the record was not redacted: None instead.

    With a ``cipher``, raw text is never stored in clear: ``full`` keeps the redacted values in the clear
    columns and the raw ones sealed (`seal_texts`, with ``"full": true``) in ``text_encrypted``. Redacted text
    is what analysts may read, so ``redacted`` and ``none`` store as without a key."""
    if store_text == "full" and cipher is not None:
        clear = text_policy("redacted")

        def sealed(r: Record, a: Annotation | None) -> tuple[Any, ...]:
            token = seal_texts(cipher, {"prompt": r.prompt, "response": r.response, "error": r.error,
                                        "feedback_comment": r.feedback_comment, "metadata": r.metadata,
                                        "full": True})
            return (*clear(r, a), token, cipher.key_id)
        return sealed
    if store_text == "full":
        return lambda r, _annotation: (r.prompt, r.response, r.error, r.feedback_comment, r.metadata)  # type: ignore[return-value]
    if store_text == "none":
        def extras_only(_record: Record, a: Annotation | None) -> tuple[Any, ...]:
            if a is None:
                return None, None, None, None, None
            return None, None, a.redacted_error, a.redacted_feedback_comment, a.redacted_metadata
        return extras_only
    if store_text == "redacted":
        def redacted(_record: Record, a: Annotation | None) -> tuple[Any, ...]:
            if a is None:
                return None, None, None, None, None
            return (a.redacted_prompt, a.redacted_response, a.redacted_error, a.redacted_feedback_comment,
                    a.redacted_metadata)
        return redacted
    raise ValueError(f"unknown store_text policy {store_text!r}")


def record_row(record: Record, annotation: Annotation | None, text: tuple[Any, ...],
               ingested_at: datetime) -> dict[str, Any]:
    """The `records` row for one record: contract fields, lengths, signals, and the texts as the policy
    (`text_policy`) gives them: ``(prompt, response, error, feedback_comment, metadata[, sealed, key id])``."""
    prompt, response, error, comment, metadata, *sealed = text
    encrypted, key = sealed or (None, None)
    row: dict[str, Any] = {
        "id": record.id,
        "ts": record.ts,
        "ingested_at": ingested_at,
        "model": record.model,
        "app": record.app,
        "route": record.route,
        "user": record.user,
        "session": record.session,
        "status": record.status,
        "error": error,
        "finish_reason": record.finish_reason,
        "prompt_chars": len(record.prompt),
        "response_chars": len(record.response),
        "latency_ms": record.latency_ms,
        "tokens_in": record.tokens_in,
        "tokens_out": record.tokens_out,
        "feedback_score": record.feedback_score,
        "feedback_comment": comment,
        "cost_usd": record.cost_usd,
        "prompt_toxicity": None,
        "response_toxicity": None,
        "refusal": None,
        "pii_count": None,
        "secret_count": None,
        "prompt": prompt,
        "response": response,
        "text_encrypted": encrypted,
        "text_key": key,
        "metadata": metadata or None,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
    }
    if annotation is not None and annotation.signals:
        row.update(annotation.signals)
    return row


def letter_digest(key: bytes | None, raw: bytes | None) -> str:
    """The hash that tells a new dead letter from a replayed one at the same (topic, partition, offset): a
    broker restarted empty or a recreated topic reuses offsets, the bytes differ. Hex, 32 characters."""
    h = hashlib.blake2b(digest_size=16)
    for part in (key, raw):
        if part is None:
            h.update(b"\xff")
        else:
            h.update(len(part).to_bytes(8, "big"))
            h.update(bytes(part))
    return h.hexdigest()


def detection_row(record_id: str, detection: Detection) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "detector": detection.detector,
        "score": float(detection.score),
        "flagged": bool(detection.flagged),
        "details": detection.details or None,
    }


class Store:
    """Writes batches. One instance per daemon; thread-compatible, not thread-safe."""

    def __init__(self, engine: Engine, text_policy: TextPolicy, store_detections: str = "flagged",
                 cipher: Cipher | None = None) -> None:
        """``cipher`` seals dead letters' raw bytes (records' texts are sealed by ``text_policy``)."""
        self.engine = engine
        self._cipher = cipher
        self._text_policy = text_policy
        self._all_detections = store_detections == "all"
        self._increment_statements: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._dialect = engine.dialect.name
        self._copy_types: dict[str, dict[str, int]] = {}

    def write(self, batch: Batch, now: datetime | None = None) -> set[str]:
        """Store the whole batch atomically, or raise Transient/PermanentStorageError and store nothing.

        Returns the ids of the records this write inserted. A record whose id was stored already (a replay,
        or another message reusing the id) is not stored again, and neither its detections nor its share of
        the batch's counters (`Batch.tallies`) are added: each stored record is counted exactly once."""
        now = now or datetime.now(UTC)
        annotations: Sequence[Annotation | None] = batch.annotations or [None] * len(batch.records)
        record_rows = []
        detection_rows = []
        for record, annotation in zip(batch.records, annotations, strict=True):
            record_rows.append(record_row(record, annotation, self._text_policy(record, annotation), now))
            if annotation is not None:
                detection_rows.extend(
                    detection_row(record.id, d) for d in annotation.detections if d.flagged or self._all_detections
                )
        late_rows, late_detections = [], []
        if batch.late and len(batch.late_annotations) == len(batch.late):
            for record, annotation in zip(batch.late, batch.late_annotations, strict=True):
                late_rows.append(record_row(record, annotation, self._text_policy(record, annotation), now))
                late_detections.extend(detection_row(record.id, d) for d in annotation.detections)
        letter_rows = [
            {"topic": d.topic, "partition": d.partition, "offset": d.offset, "key": d.key,
             **self._raw_columns(d.raw), "reason": seal(d.reason), "received_at": now,
             "digest": letter_digest(d.key, d.raw), "part": d.part}
            for d in batch.dead_letters
        ]
        try:
            with self.engine.begin() as conn:
                inserted = self._insert_records(conn, record_rows)
                if len(inserted) < len(record_rows):
                    detection_rows = [d for d in detection_rows if d["record_id"] in inserted]
                self._insert_ignore(conn, detections, detection_rows)
                self._insert_ignore(conn, dead_letters, letter_rows)
                # Records whose text arrived after them: their row and every detection replaced (a detection
                # of the text-less record, e.g. an empty answer taken for a refusal, must not stay flagged).
                self._upsert(conn, records, late_rows)
                self._upsert(conn, detections, late_detections)
                for table, rows in batch.rows.items():
                    self._insert_ignore(conn, table, rows)
                for table, rows in batch.upserts.items():
                    self._upsert(conn, table, rows)
                increments = {table: list(rows) for table, rows in batch.increments.items()}
                for tally in batch.tallies:
                    for table, rows in tally.rows(inserted).items():
                        increments.setdefault(table, []).extend(rows)
                for table, rows in increments.items():
                    self._increment(conn, table, rows)
        except (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError, exc.TimeoutError,
                psycopg.OperationalError, psycopg.InterfaceError) as e:  # raw cursor errors (COPY) too
            raise TransientStorageError(_short(e)) from e
        except (exc.IntegrityError, exc.DataError, psycopg.IntegrityError, psycopg.DataError) as e:
            raise PermanentStorageError(_short(e)) from e
        except exc.StatementError as e:
            # A value the driver could not even send (SQLAlchemy wraps the client-side error): the data's fault.
            if isinstance(e.orig, TypeError | ValueError | OverflowError | RecursionError):
                raise PermanentStorageError(f"value not sendable: {type(e.orig).__name__}") from e
            raise
        return inserted

    def _raw_columns(self, raw: bytes | None) -> dict[str, Any]:
        """A dead letter's bytes as stored: clear, or sealed with the first key."""
        if self._cipher is None or raw is None:
            return {"raw": raw, "raw_encrypted": None, "raw_key": None}
        return {"raw": None, "raw_encrypted": self._cipher.encrypt(bytes(raw)), "raw_key": self._cipher.key_id}

    def read_positions(self, group_id: str) -> dict[tuple[str, int], int]:
        """``consumer_progress.committed`` of ``group_id`` per (topic, partition): the offset after the last
        batch stored, as stored with it."""
        t = consumer_progress.c
        try:
            with self.engine.connect() as conn:
                return {(topic, partition): int(committed) for topic, partition, committed in conn.execute(
                    select(t.topic, t.partition, t.committed).where(t.group_id == group_id))}
        except (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError, exc.TimeoutError) as e:
            raise TransientStorageError(_short(e)) from e

    def stored_at(self, record_id: str) -> tuple[str, int, int] | None:
        """Where the stored record ``record_id`` came from (topic, partition, offset), or None if not stored."""
        r = records.c
        try:
            with self.engine.connect() as conn:
                row = conn.execute(select(r.topic, r.partition, r.offset).where(r.id == record_id)).first()
        except (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError, exc.TimeoutError) as e:
            raise TransientStorageError(_short(e)) from e
        return None if row is None else (row[0], int(row[1]), int(row[2]))

    # -- dialect-specific idempotent writes ------------------------------------------------------------

    def _insert_records(self, conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
        """Insert the `records` rows not stored yet; the ids inserted."""
        if not rows:
            return set()
        if self._dialect == "postgresql" and len(rows) >= _COPY_MIN_ROWS:
            return set(self._copy_insert_ignore(conn, records, rows, returning="id"))
        return set(insert_ignore(conn, records, rows, returning="id") or ())

    def _insert_ignore(self, conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self._dialect == "postgresql" and len(rows) >= _COPY_MIN_ROWS and not _has_autoincrement(table):
            self._copy_insert_ignore(conn, table, rows)
        else:
            insert_ignore(conn, table, rows)

    def _upsert(self, conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        # Last write per key wins; a statement must not touch the same row twice.
        keys = [c.name for c in table.primary_key.columns]
        unique = list({tuple(r[k] for k in keys): r for r in rows}.values())
        dialect = postgresql if self._dialect == "postgresql" else sqlite
        stmt = dialect.insert(table)
        update = {c: stmt.excluded[c] for c in unique[0] if c not in keys}
        conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=update), unique)

    def _increment(self, conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
        """Add ``rows`` to the counters already stored under the same key (a new key inserts the row).

        Rows with the same key are merged here first (a statement must not touch a row twice), and are
        written in key order so that two daemons adding to the same rows lock them in the same order.
        """
        if not rows:
            return
        merged = merge_increments(table, rows)
        statement = self._increment_statements.get((table.name, tuple(merged[0])))
        if statement is None:
            statement = self._increment_statement(table, list(merged[0]))
            self._increment_statements[(table.name, tuple(merged[0]))] = statement
        conn.execute(statement, merged)

    def _increment_statement(self, table: Table, columns: list[str]) -> Any:
        """The insert-or-add statement for these columns; built once per table and column set (building it
        costs milliseconds, once per batch otherwise)."""
        keys = [c.name for c in table.primary_key.columns]
        dialect = postgresql if self._dialect == "postgresql" else sqlite
        least, greatest = (func.least, func.greatest) if self._dialect == "postgresql" else (func.min, func.max)
        stmt = dialect.insert(table)
        update: dict[str, Any] = {}
        for name in columns:
            if name in keys:
                continue
            old, new = table.c[name], stmt.excluded[name]
            how = table.c[name].info.get("merge", "sum")
            if how == "replace":
                update[name] = new
            elif how in ("min", "max"):
                pick = least if how == "min" else greatest
                update[name] = pick(func.coalesce(old, new), func.coalesce(new, old))
            else:
                update[name] = old + new
        return stmt.on_conflict_do_update(index_elements=keys, set_=update)

    def _copy_insert_ignore(self, conn: Connection, table: Table, rows: list[dict[str, Any]],
                            returning: str | None = None) -> list[Any]:
        """Binary COPY straight into ``table`` under a savepoint: the common case, new rows only, writes
        each row once. If any row is already there (a replayed batch), roll back to the savepoint and go
        through a staging table with ``INSERT … ON CONFLICT DO NOTHING``. With ``returning`` (a column), the
        values of that column of the rows inserted (all of them when the COPY went straight in).

        Binary rather than text COPY because formatting every value as text is most of what the client
        spends on a batch (``bench/store.py``); the price is that values are sent as the column's exact
        type, so each column's type comes from the catalog, not from the Python value.
        """
        columns = list(rows[0])
        dbapi = conn.connection.driver_connection
        assert dbapi is not None
        types = self._column_types(dbapi, table, columns)
        values = list(map(itemgetter(*columns), rows)) if len(columns) > 1 else [[row[columns[0]]] for row in rows]
        quoted = ", ".join(f'"{c}"' for c in columns)
        with dbapi.cursor() as cur:
            set_json_dumps(orjson.dumps, context=cur)
            cur.execute("SAVEPOINT watchkeeper_copy")
            try:
                _copy_rows(cur, f'COPY "{table.name}" ({quoted}) FROM STDIN (FORMAT BINARY)', types, values)
            except psycopg.errors.UniqueViolation:
                cur.execute("ROLLBACK TO SAVEPOINT watchkeeper_copy")
            else:
                cur.execute("RELEASE SAVEPOINT watchkeeper_copy")
                return [row[returning] for row in rows] if returning else []
            stage = f"_stage_{table.name}"
            cur.execute(
                f'CREATE TEMP TABLE IF NOT EXISTS "{stage}" (LIKE "{table.name}") ON COMMIT DELETE ROWS'
            )
            _copy_rows(cur, f'COPY "{stage}" ({quoted}) FROM STDIN (FORMAT BINARY)', types, values)
            tail = f' RETURNING "{returning}"' if returning else ""
            cur.execute(
                f'INSERT INTO "{table.name}" ({quoted}) SELECT {quoted} FROM "{stage}" ON CONFLICT DO NOTHING{tail}'
            )
            inserted = [row[0] for row in cur.fetchall()] if returning else []
            cur.execute(f'TRUNCATE "{stage}"')
            return inserted

    def _column_types(self, dbapi: psycopg.Connection[Any], table: Table, columns: list[str]) -> list[int]:
        """The type OID of each of ``columns`` as the database has it (read once per table)."""
        known = self._copy_types.get(table.name)
        if known is None:
            with dbapi.cursor() as cur:
                cur.execute("SELECT attname, atttypid FROM pg_attribute WHERE attrelid = %s::regclass "
                            "AND attnum > 0 AND NOT attisdropped", (f'"{table.name}"',))
                known = {name: int(oid) for name, oid in cur.fetchall()}
            self._copy_types[table.name] = known
        return [known[c] for c in columns]


def _copy_rows(cur: psycopg.Cursor[Any], statement: str, types: list[int], values: list[Any]) -> None:
    """One binary COPY. A value that cannot be sent as its column's type (a float for an integer column,
    a naive timestamp) is the data's fault, like a value the server refuses: raised as a DataError."""
    try:
        with cur.copy(statement) as copy:
            copy.set_types(types)
            for value in values:
                copy.write_row(value)
    except (TypeError, ValueError, OverflowError) as e:
        raise psycopg.DataError(f"value not sendable as its column's type: {e}") from e


def merge_increments(table: Table, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Counter rows with the same primary key merged into one (summed, or as the column's
    ``info["merge"]`` says: ``min``, ``max``, ``replace``), in key order."""
    keys = [c.name for c in table.primary_key.columns]
    how = {c.name: c.info.get("merge", "sum") for c in table.columns}
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[k] for k in keys)
        into = merged.get(key)
        if into is None:
            merged[key] = dict(row)
            continue
        for name, value in row.items():
            if name in keys:
                continue
            kind, old = how[name], into.get(name)
            if kind == "replace" or old is None:
                into[name] = value
            elif value is None:
                continue
            elif kind == "min":
                into[name] = min(old, value)
            elif kind == "max":
                into[name] = max(old, value)
            else:
                into[name] = old + value
    return [merged[key] for key in sorted(merged)]


def _has_autoincrement(table: Table) -> bool:
    return table.autoincrement_column is not None


def _short(error: BaseException) -> str:
    return str(getattr(error, "orig", None) or error).strip().splitlines()[0][:300]
