"""Key rotation (`watchkeeper db rotate-key`): every ciphertext re-encrypted with the first key of the list.

Safe while daemons run: it reads a chunk of rows whose key id is not the first key's (keyset order by id),
re-encrypts them here and writes each back only if its key id is still the one read (a row rotated or
rewritten meanwhile is left alone), one transaction per chunk, so the daemon's batches are never blocked for
long. Rows inserted during the run come with whatever key the daemon encrypts with: give the daemons the new
list (new key first) before rotating, and rows they write need nothing. Dead letters stored in clear before a
key was set are sealed too. A ciphertext that no key of the list opens is counted and left as it is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Column, Engine, Table, bindparam, func, or_, select, update

from monitor.storage.crypto import Cipher, Undecryptable
from monitor.storage.schema import dead_letters, records

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RotationReport:
    """Rows re-encrypted (or sealed) and rows no key opened, per table."""

    rotated: dict[str, int] = field(default_factory=dict)
    sealed_clear: int = 0
    undecryptable: dict[str, int] = field(default_factory=dict)


_SEALED: tuple[tuple[Table, Column, Column, Column], ...] = (
    (records, records.c.id, records.c.text_encrypted, records.c.text_key),
    (dead_letters, dead_letters.c.id, dead_letters.c.raw_encrypted, dead_letters.c.raw_key),
)
"""Each table with a ciphertext: (table, its key for paging, the ciphertext, the id of the key that made it)."""


def rotate(engine: Engine, cipher: Cipher, chunk: int = 500, pause_s: float = 0.0,
           progress: Callable[[str, int], None] | None = None) -> RotationReport:
    """Re-encrypt every stored ciphertext not made with ``cipher``'s first key, ``chunk`` rows per transaction
    (``pause_s`` between chunks gives a busy database room), then seal clear dead letters."""
    report = RotationReport()
    for table, ident, token, key in _SEALED:
        done, failed = 0, 0
        last = None
        while True:
            query = (select(ident, token, key)
                     .where(token.is_not(None), or_(key.is_(None), key != cipher.key_id))
                     .order_by(ident).limit(chunk))
            if last is not None:
                query = query.where(ident > last)
            with engine.connect() as conn:
                rows = conn.execute(query).all()
            if not rows:
                break
            last = rows[-1][0]
            updates = []
            for row_id, old_token, old_key in rows:
                try:
                    updates.append({"_id": row_id, "_old": old_key or "", "_token": cipher.rotate(old_token, old_key)})
                except Undecryptable:
                    failed += 1
            done += _write(engine, table, ident, token, key, updates, cipher.key_id)
            if progress:
                progress(table.name, done)
            if pause_s:
                time.sleep(pause_s)
        report.rotated[table.name] = done
        report.undecryptable[table.name] = failed
    report.sealed_clear = _seal_clear_letters(engine, cipher, chunk, pause_s)
    return report


def _write(engine: Engine, table: Table, ident: Column, token: Column, key: Column,
           updates: list[dict[str, object]], key_id: str) -> int:
    """Write re-encrypted tokens back where the key id is still the one read; returns rows written."""
    if not updates:
        return 0
    statement = (update(table)
                 .where(ident == bindparam("_id"), func.coalesce(key, "") == bindparam("_old"))
                 .values({token.name: bindparam("_token"), key.name: key_id}))
    with engine.begin() as conn:
        result = conn.execute(statement, updates)
    return int(result.rowcount) if result.rowcount is not None and result.rowcount >= 0 else len(updates)


def _seal_clear_letters(engine: Engine, cipher: Cipher, chunk: int, pause_s: float) -> int:
    """Dead letters stored in clear (before a key was set) moved to ``raw_encrypted``."""
    c = dead_letters.c
    sealed = 0
    last = 0
    statement = (update(dead_letters).where(c.id == bindparam("_id"), c.raw.is_not(None))
                 .values(raw=None, raw_encrypted=bindparam("_token"), raw_key=cipher.key_id))
    while True:
        with engine.connect() as conn:
            rows = conn.execute(select(c.id, c.raw).where(c.raw.is_not(None), c.id > last)
                                .order_by(c.id).limit(chunk)).all()
        if not rows:
            return sealed
        last = rows[-1][0]
        with engine.begin() as conn:
            conn.execute(statement, [{"_id": i, "_token": cipher.encrypt(bytes(raw))} for i, raw in rows])
        sealed += len(rows)
        if pause_s:
            time.sleep(pause_s)
