"""Encryption at rest: ciphertext columns beside the clear ones, with the id of the key that made them.

`records.text_encrypted` holds the texts `store_text` keeps (a Fernet token of JSON) and `dead_letters.raw_encrypted`
a dead letter's raw bytes, when `[storage] encryption_key` is set; `*_key` names the key (a hash, never the key) so
`watchkeeper db rotate-key` finds rows under an old key. Rows written before stay as they were.

Revision ID: 0009_encryption
Revises: 0008_drift_buckets
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0009_encryption"
down_revision: str | None = "0008_drift_buckets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("records", sa.Column(
        "text_encrypted", sa.LargeBinary(), nullable=True,
        comment="Fernet token of the texts store_text keeps (JSON), when [storage] encryption_key is set"))
    op.add_column("records", sa.Column("text_key", sa.String(16), nullable=True,
                                       comment="id of the key text_encrypted was made with (never the key)"))
    op.add_column("dead_letters", sa.Column("raw_encrypted", sa.LargeBinary(), nullable=True,
                                            comment="Fernet token of raw, when [storage] encryption_key is set"))
    op.add_column("dead_letters", sa.Column("raw_key", sa.String(16), nullable=True,
                                            comment="id of the key raw_encrypted was made with (never the key)"))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+): a batch copy of `records` would trip over the views that read it.
    for table, columns in (("dead_letters", ("raw_key", "raw_encrypted")), ("records", ("text_key", "text_encrypted"))):
        for column in columns:
            op.execute(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
