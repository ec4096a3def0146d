"""Two column comments brought in line with what the columns now hold (Postgres keeps comments; SQLite has none).

``stream_minutes.toxic`` counts at the configured toxicity threshold (default 0.3 since migration 0013), not
at 0.5; ``dead_letters.raw`` is NULL when the message is stored encrypted (migration 0009). Analysts read these
comments in their SQL client (``\\d+ stream_minutes``), so a stale one misleads them.

Revision ID: 0014_column_comments
Revises: 0013_toxic_default_cutoff
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0014_column_comments"
down_revision: str | None = "0013_toxic_default_cutoff"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, type, nullable, comment before, comment after)
CHANGES = (
    ("stream_minutes", "toxic", sa.BigInteger(), False,
     "records with response_toxicity >= 0.5 (detectors.drift.signals.TOXIC_AT)",
     "records with response_toxicity >= [detectors.toxicity] threshold (default 0.3)"),
    ("dead_letters", "raw", sa.LargeBinary(), True,
     "the message value exactly as received",
     "the message value exactly as received (NULL when encrypted)"),
)


def _comment(which: int) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite keeps no comments; a table rebuild for them would be all cost
    for table, column, type_, nullable, before, after in CHANGES:
        op.alter_column(table, column, existing_type=type_, existing_nullable=nullable,
                        comment=(before, after)[which], existing_comment=(after, before)[which])


def upgrade() -> None:
    _comment(1)


def downgrade() -> None:
    _comment(0)
