"""``records.ingested_at`` indexed, and commented: the dead_letter_rate rule counts records stored in its window.

It counted accepted records by event time (`stream_minutes`), so a replay or a backlog of old records looked
like 100% dead letters (bench/faults: "accepted=0" while records were being stored). Records stored in the
window are counted by arrival, as dead letters are; the index keeps that count cheap on a large table.

Revision ID: 0015_records_ingested_at
Revises: 0014_column_comments
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0015_records_ingested_at"
down_revision: str | None = "0014_column_comments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMMENT = "when the daemon stored it (arrival, not event time)"


def upgrade() -> None:
    op.create_index(op.f("ix_records_ingested_at"), "records", ["ingested_at"])
    if op.get_bind().dialect.name == "postgresql":  # SQLite keeps no comments
        op.alter_column("records", "ingested_at", existing_type=sa.DateTime(timezone=True), existing_nullable=False,
                        comment=COMMENT)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("records", "ingested_at", existing_type=sa.DateTime(timezone=True), existing_nullable=False,
                        comment=None, existing_comment=COMMENT)
    op.drop_index(op.f("ix_records_ingested_at"), table_name="records")
