"""Dead letters keyed by content as well as position: (topic, partition, offset, digest).

A broker restarted empty, a recreated topic or retention hands out offsets again; keyed on the offset alone,
a new dead letter at a reused offset was taken for one already stored and dropped (ON CONFLICT DO NOTHING).
`digest` is a hash of the message's key and value (`monitor.storage.store.letter_digest`): a replayed message
still maps to the row it made (same position, same bytes), a new message at a reused offset gets its own.
Rows stored before this migration get their digest computed here.

Revision ID: 0007_dead_letter_digest
Revises: 0006_reference_health
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007_dead_letter_digest"
down_revision: str | None = "0006_reference_health"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _digest(key: bytes | None, raw: bytes | None) -> str:
    """Same as `monitor.storage.store.letter_digest` (copied: a migration must not change with the code)."""
    h = hashlib.blake2b(digest_size=16)
    for part in (key, raw):
        if part is None:
            h.update(b"\xff")
        else:
            h.update(len(part).to_bytes(8, "big"))
            h.update(bytes(part))
    return h.hexdigest()


def upgrade() -> None:
    op.add_column("dead_letters", sa.Column("digest", sa.String(32), nullable=False, server_default="",
                                            comment="hash of the message key and value: new vs replayed"))
    conn = op.get_bind()
    table = sa.table("dead_letters", sa.column("id", sa.BigInteger), sa.column("key", sa.LargeBinary),
                     sa.column("raw", sa.LargeBinary), sa.column("digest", sa.String))
    rows = conn.execute(sa.select(table.c.id, table.c.key, table.c.raw)).all()
    if rows:
        conn.execute(sa.update(table).where(table.c.id == sa.bindparam("row_id")).values(digest=sa.bindparam("d")),
                     [{"row_id": r.id, "d": _digest(r.key, r.raw)} for r in rows])
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_constraint("uq_dead_letters_topic_partition_offset", type_="unique")
        batch.create_unique_constraint("uq_dead_letters_topic_partition_offset_digest",
                                       ["topic", "partition", "offset", "digest"])


def downgrade() -> None:
    # Letters that share a position (a reused offset) keep the first one stored.
    conn = op.get_bind()
    conn.execute(sa.text(
        'DELETE FROM dead_letters WHERE id NOT IN (SELECT MIN(id) FROM dead_letters GROUP BY topic, "partition", '
        '"offset")'))
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_constraint("uq_dead_letters_topic_partition_offset_digest", type_="unique")
        batch.create_unique_constraint("uq_dead_letters_topic_partition_offset", ["topic", "partition", "offset"])
        batch.drop_column("digest")
